//go:build linux

package kerneltest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// wire is a packet socket on one veth end. On the client's end it writes
// the scenario's frames and reads what the firewall sends back; on the
// firewall's end it only reads, as tcpdump would: both directions, before
// netfilter, so frames kwl drops are captured too.
type wire struct {
	f       *os.File
	conn    syscall.RawConn
	ifindex int
	done    chan struct{}

	mu sync.Mutex
	// synacks maps a flow, seen from the client, to the firewall's initial
	// sequence number, from the SYN-ACK it sent.
	synacks map[flowKey]uint32
	frames  []Frame
}

// Frame is one frame seen on the wire, for a capture of the scenario.
type Frame struct {
	Time time.Time // the kernel's receive timestamp (wall clock)
	Out  bool      // sent from this end: by the firewall, on its capture
	Data []byte
}

// flowKey names a flow from the client's side.
type flowKey struct {
	src   netip.Addr
	sport uint16
	dst   netip.Addr
	dport uint16
	proto lang.Proto
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openWire(ns *netns.NS, ifname string) (*wire, error) {
	w := &wire{synacks: map[flowKey]uint32{}, done: make(chan struct{})}
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		w.ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		// The kernel stamps each frame as the receive path takes it
		// (net_timestamp_check in __netif_receive_skb_core), just before
		// netfilter sees it: on the firewall's side this is the time the
		// rules ran.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind AF_PACKET to %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A non-blocking fd in an os.File goes through the runtime poller, so
	// Close wakes the reader.
	w.f = os.NewFile(uintptr(fd), "packet:"+ifname)
	if w.conn, err = w.f.SyscallConn(); err != nil {
		w.f.Close()
		return nil, err
	}
	go w.read()
	return w, nil
}

func (w *wire) close() {
	w.f.Close()
	<-w.done
}

// send writes one frame and returns the time right after the kernel took
// it: veth_xmit hands the frame to the peer's receive queue within the
// sendto call.
func (w *wire) send(frame []byte) (time.Time, error) {
	sa := &unix.SockaddrLinklayer{Ifindex: w.ifindex, Halen: 6}
	copy(sa.Addr[:], fwMAC)
	var serr error
	err := w.conn.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), frame, 0, sa)
		return serr != unix.EAGAIN
	})
	now := time.Now()
	if err == nil {
		err = serr
	}
	if err != nil {
		return now, fmt.Errorf("send frame: %w", err)
	}
	return now, nil
}

func (w *wire) read() {
	defer close(w.done)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := w.conn.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil || (rerr != nil && rerr != unix.EINTR) {
			return
		}
		if rerr != nil {
			continue
		}
		out := false
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			out = true
		}
		frame := append([]byte(nil), buf[:n]...)
		at := time.Now()
		if ts, ok := stamp(oob[:oobn]); ok {
			at = ts
		}
		w.mu.Lock()
		w.frames = append(w.frames, Frame{Time: at, Out: out, Data: frame})
		if !out {
			w.noteSynack(frame)
		}
		w.mu.Unlock()
	}
}

// stamp returns the kernel's receive timestamp (SCM_TIMESTAMPNS) from a
// message's control data.
func stamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return time.Unix(sec, nsec), true
		}
	}
	return time.Time{}, false
}

// noteSynack records the firewall's initial sequence number from a
// SYN-ACK. Called with w.mu held.
func (w *wire) noteSynack(frame []byte) {
	p, ok := parseFrame(frame)
	if !ok || p.proto != lang.TCP || p.flags&(flagSYN|flagACK) != flagSYN|flagACK {
		return
	}
	// The SYN-ACK goes from the firewall to the client: the client's flow
	// key is the reverse.
	k := flowKey{src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, proto: lang.TCP}
	w.synacks[k] = p.seq
}

func (w *wire) synack(k flowKey) (uint32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.synacks[k]
	return s, ok
}

// Frames returns a copy of the frames seen so far.
func (w *wire) Frames() []Frame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Frame(nil), w.frames...)
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

// pkt is a packet to build, or a parsed one.
type pkt struct {
	src, dst     netip.Addr
	proto        lang.Proto
	sport, dport uint16
	tag          uint32 // IPv4 id or IPv6 flow label
	seq, ack     uint32
	flags        uint8
	payload      []byte
}

// build returns the Ethernet frame of p, checksums filled in.
func build(p pkt) []byte {
	var l4 []byte
	switch p.proto {
	case lang.TCP:
		l4 = make([]byte, 20+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint32(l4[4:], p.seq)
		binary.BigEndian.PutUint32(l4[8:], p.ack)
		l4[12] = 5 << 4
		l4[13] = p.flags
		binary.BigEndian.PutUint16(l4[14:], 64240)
		copy(l4[20:], p.payload)
	case lang.UDP:
		l4 = make([]byte, 8+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], p.payload)
	default:
		panic("build: protocol " + p.proto.String())
	}
	csumOff := 16
	if p.proto == lang.UDP {
		csumOff = 6
	}
	sum := pseudoSum(p.src, p.dst, p.proto, len(l4))
	c := ^fold(sum + sumBytes(l4))
	if c == 0 && p.proto == lang.UDP {
		c = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)

	var frame []byte
	eth := make([]byte, 14)
	copy(eth[0:], fwMAC)
	copy(eth[6:], clMAC)
	if p.src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], uint16(p.tag))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = byte(p.proto)
		s, d := p.src.As4(), p.dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sumBytes(ip)))
		frame = append(append(eth, ip...), l4...)
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip := make([]byte, 40)
		binary.BigEndian.PutUint32(ip[0:], 6<<28|p.tag&0xfffff)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = byte(p.proto)
		ip[7] = 64
		s, d := p.src.As16(), p.dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		frame = append(append(eth, ip...), l4...)
	}
	return frame
}

func sumBytes(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func pseudoSum(src, dst netip.Addr, proto lang.Proto, n int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = sumBytes(a[:]) + sumBytes(b[:])
	} else {
		a, b := src.As16(), dst.As16()
		s = sumBytes(a[:]) + sumBytes(b[:])
	}
	return s + uint32(proto) + uint32(n)
}

// parseFrame decodes the fields the harness needs from an Ethernet frame.
func parseFrame(f []byte) (pkt, bool) {
	var p pkt
	if len(f) < 14 {
		return p, false
	}
	et := binary.BigEndian.Uint16(f[12:])
	b := f[14:]
	var l4 []byte
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return p, false
		}
		ihl := int(b[0]&0xf) * 4
		if len(b) < ihl {
			return p, false
		}
		p.src = netip.AddrFrom4([4]byte(b[12:16]))
		p.dst = netip.AddrFrom4([4]byte(b[16:20]))
		p.proto = lang.Proto(b[9])
		p.tag = uint32(binary.BigEndian.Uint16(b[4:]))
		l4 = b[ihl:]
	case 0x86dd:
		if len(b) < 40 {
			return p, false
		}
		p.src = netip.AddrFrom16([16]byte(b[8:24]))
		p.dst = netip.AddrFrom16([16]byte(b[24:40]))
		p.proto = lang.Proto(b[6])
		p.tag = binary.BigEndian.Uint32(b[0:]) & 0xfffff
		l4 = b[40:]
	default:
		return p, false
	}
	switch p.proto {
	case lang.TCP:
		if len(l4) < 20 {
			return p, false
		}
		p.seq = binary.BigEndian.Uint32(l4[4:])
		p.ack = binary.BigEndian.Uint32(l4[8:])
		p.flags = l4[13]
	case lang.UDP:
		if len(l4) < 8 {
			return p, false
		}
	default:
		return p, true
	}
	p.sport = binary.BigEndian.Uint16(l4[0:])
	p.dport = binary.BigEndian.Uint16(l4[2:])
	return p, true
}
