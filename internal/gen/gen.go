// Package gen writes synthetic packet captures for kwl's benchmarks and
// tests: connection attempts from many sources over a span of time, with
// knocks and ssh connections among them, as a pcap file that tcpdump,
// Wireshark and kwl sim read alike.
package gen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"time"
)

// Options shape the traffic.
type Options struct {
	Packets int           // packets to write
	Sources int           // distinct IPv4 sources (and as many IPv6 ones), at most 1<<24
	Span    time.Duration // time from the first packet to the last
	Seed    uint64        // the same seed gives the same file
}

// Defaults are the benchmark's traffic: 100,000 sources over an hour.
var Defaults = Options{Packets: 1_000_000, Sources: 100_000, Span: time.Hour, Seed: 1}

// The firewall's addresses, which every packet is sent to.
var (
	Firewall4 = [4]byte{192, 0, 2, 1}
	Firewall6 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 15: 1}
)

// Source4 is the i-th IPv4 source: 10.0.0.0/8 counted up from 10.0.0.1.
func Source4(i int) [4]byte {
	i++
	return [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
}

// Source6 is the i-th IPv6 source, in 2001:db8:1::/48.
func Source6(i int) [16]byte {
	i++
	return [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}
}

// The mix, in percent of the events: each event is one packet except a
// knock, which is three (the knock on 1600, a SYN to 22, then the ACK
// that completes the handshake).
const (
	pctKnock  = 3  // knock on 1600 then ssh
	pctSSH    = 27 // ssh connection attempt without a knock
	pctOther  = 50 // SYN to http, https, the close ports 1599/1601 or a high port
	pctUDP    = 10 // dns, ntp, a high port
	pctTCP6   = 10 // IPv6 SYN to 22, 80 or 1600
	tcpFrame4 = 14 + 20 + 20
	udpFrame4 = 14 + 20 + 8 + 32
	tcpFrame6 = 14 + 40 + 20
)

// Write writes a pcap capture (microsecond timestamps, Ethernet) of
// o.Packets packets to w.
func Write(w io.Writer, o Options) error {
	if o.Packets < 0 || o.Sources <= 0 || o.Sources > 1<<24-2 || o.Span < 0 {
		return errors.New("gen: need packets >= 0, 1 <= sources < 2^24 and span >= 0")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	bw.Write(hdr[:])

	rng := rand.New(rand.NewPCG(o.Seed, 0x6b776c))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := writer{w: bw}
	step := time.Duration(0)
	if o.Packets > 1 {
		step = o.Span / time.Duration(o.Packets-1)
	}
	for i := 0; i < o.Packets; {
		t := start.Add(step * time.Duration(i))
		src := rng.IntN(o.Sources)
		sport := uint16(32768 + rng.IntN(28000))
		switch r := rng.IntN(100); {
		case r < pctKnock:
			g.tcp4(t, src, sport, 1600, synFlag)
			i++
			if i < o.Packets {
				g.tcp4(t.Add(step/3), src, sport+1, 22, synFlag)
				i++
			}
			if i < o.Packets {
				g.tcp4(t.Add(2*step/3), src, sport+1, 22, ackFlag)
				i++
			}
			continue
		case r < pctKnock+pctSSH:
			g.tcp4(t, src, sport, 22, synFlag)
		case r < pctKnock+pctSSH+pctOther:
			g.tcp4(t, src, sport, otherPorts[rng.IntN(len(otherPorts))], synFlag)
		case r < pctKnock+pctSSH+pctOther+pctUDP:
			g.udp4(t, src, sport, udpPorts[rng.IntN(len(udpPorts))])
		default:
			g.tcp6(t, src, sport, v6Ports[rng.IntN(len(v6Ports))], synFlag)
		}
		i++
	}
	if g.err != nil {
		return g.err
	}
	return bw.Flush()
}

var (
	otherPorts = []uint16{80, 80, 443, 443, 443, 1599, 1601, 8080, 3389, 49152}
	udpPorts   = []uint16{53, 53, 123, 51820, 33434}
	v6Ports    = []uint16{22, 80, 443, 1600}
)

const (
	synFlag = 0x02
	ackFlag = 0x10
)

type writer struct {
	w   *bufio.Writer
	buf [16 + 128]byte
	err error
}

func (g *writer) record(t time.Time, frame int) []byte {
	b := g.buf[:16+frame]
	clear(b)
	binary.LittleEndian.PutUint32(b[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(b[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(b[8:], uint32(frame))
	binary.LittleEndian.PutUint32(b[12:], uint32(frame))
	e := b[16:]
	copy(e[0:6], []byte{0x02, 0, 0, 0, 0, 1})  // the firewall
	copy(e[6:12], []byte{0x02, 0, 0, 0, 0, 2}) // its router
	return e
}

func (g *writer) flush(b []byte) {
	if g.err == nil {
		_, g.err = g.w.Write(b)
	}
}

func ipv4(e []byte, src int, proto byte, length int) []byte {
	binary.BigEndian.PutUint16(e[12:], 0x0800)
	ip := e[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(length))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment
	s := Source4(src)
	copy(ip[12:16], s[:])
	copy(ip[16:20], Firewall4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return ip[20:]
}

func tcp(b []byte, sport, dport uint16, flags byte) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], uint32(sport)<<16|uint32(dport))
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], 64240)
}

func (g *writer) tcp4(t time.Time, src int, sport, dport uint16, flags byte) {
	e := g.record(t, tcpFrame4)
	tcp(ipv4(e, src, 6, 40), sport, dport, flags)
	g.flush(g.buf[:16+tcpFrame4])
}

func (g *writer) udp4(t time.Time, src int, sport, dport uint16) {
	e := g.record(t, udpFrame4)
	u := ipv4(e, src, 17, 20+8+32)
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], 8+32)
	g.flush(g.buf[:16+udpFrame4])
}

func (g *writer) tcp6(t time.Time, src int, sport, dport uint16, flags byte) {
	e := g.record(t, tcpFrame6)
	binary.BigEndian.PutUint16(e[12:], 0x86dd)
	ip := e[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], 20)
	ip[6], ip[7] = 6, 64
	s := Source6(src)
	copy(ip[8:24], s[:])
	copy(ip[24:40], Firewall6[:])
	tcp(ip[40:], sport, dport, flags)
	g.flush(g.buf[:16+tcpFrame6])
}
