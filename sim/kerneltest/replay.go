//go:build linux

package kerneltest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"kwl.dev/kwl/lang"
)

// Packet is one packet of a scenario, as a test step describes it.
type Packet struct {
	At    time.Duration // planned send time since the scenario's start
	Src   netip.Addr
	SPort uint16     // 0: a fresh port for New, the latest flow's port for Data
	Dst   netip.Addr // invalid: the firewall's address of Src's family
	Port  lang.Port
	Kind  lang.StepKind
	// Flags, when HasFlags, are the TCP packet's flags, exactly (a test
	// step's flags clause): a scan's probe from a fresh port, or, with
	// Data, a packet of the latest flow.
	Flags    lang.TCPFlags
	HasFlags bool
	// Payload, when set, is a UDP datagram's payload (a secret knock's
	// token) instead of the lab's own.
	Payload []byte
}

// attempt reports whether the packet is a TCP connection attempt, which
// the firewall's listener answers with a SYN-ACK when it gets through:
// a SYN without ACK, FIN or RST.
func (p *Packet) attempt() bool {
	if p.Port.Proto != lang.TCP || p.Kind != lang.New {
		return false
	}
	return !p.HasFlags || p.Flags&(lang.SYN|lang.ACK|lang.FIN|lang.RST) == lang.SYN
}

// Outcome is what happened to one packet on the kernel.
type Outcome struct {
	Packet // SPort and Dst resolved
	// Sent is when the firewall's kernel received the packet, since the
	// start: the receive timestamp of its frame on the firewall's side,
	// taken just before netfilter ran. This is the time the simulator is
	// given. Without a timestamp (never seen so far) it is the time the
	// harness sent it.
	Sent   time.Duration
	SentBy time.Duration // when the harness's sendto returned, since the start
	Seen   bool          // the firewall's capture has the packet (and Sent is its timestamp)
	Tag    uint32        // the IPv4 id / IPv6 flow label it carried
	Passed bool          // kwl did not drop it (the probe saw it)
	// Rejected reports, for a packet that did not pass, that the firewall
	// answered it as a reject does: a TCP reset on its flow, or an ICMP
	// or ICMPv6 port unreachable quoting it.
	Rejected bool
	// SynAck reports, for a TCP connection attempt, whether the firewall
	// answered the flow with a SYN-ACK by the end of the scenario.
	SynAck bool
	rx     time.Time // the firewall's receive timestamp, when Seen
}

// tagKey names a packet the client sent by what its frames carry: its
// family and its tag.
type tagKey struct {
	v6  bool
	tag uint32
}

func (o *Outcome) key() tagKey { return tagKey{!o.Src.Unmap().Is4(), o.Tag} }
func (p *pkt) key() tagKey     { return tagKey{!p.src.Unmap().Is4(), p.tag} }

// Resolve fills in source ports and destinations the way the kwl test
// runner does: a New packet without a port gets a fresh one, a Data packet
// without a port uses the port of the latest New packet from the same
// source to the same service port.
func Resolve(pkts []Packet) []Packet {
	out := make([]Packet, len(pkts))
	next := uint16(40000)
	type key struct {
		src  netip.Addr
		port lang.Port
	}
	latest := map[key]uint16{}
	used := map[uint16]bool{}
	for _, p := range pkts {
		if p.SPort != 0 {
			used[p.SPort] = true
		}
	}
	for i, p := range pkts {
		if !p.Dst.IsValid() {
			p.Dst = FW4
			if !p.Src.Unmap().Is4() {
				p.Dst = FW6
			}
		}
		k := key{p.Src, p.Port}
		if p.SPort == 0 {
			if s, ok := latest[k]; ok && p.Kind == lang.Data {
				p.SPort = s
			} else {
				for next != 0 && used[next] {
					next++
				}
				if next == 0 {
					panic("kerneltest: a scenario of more fresh source ports than 40000 to 65535")
				}
				p.SPort = next
				used[next] = true
			}
		}
		if p.Kind == lang.New {
			latest[k] = p.SPort
		}
		out[i] = p
	}
	return out
}

// Ports returns the distinct service ports the packets are sent to.
func Ports(pkts []Packet) []lang.Port {
	seen := map[lang.Port]bool{}
	var ports []lang.Port
	for _, p := range pkts {
		if !seen[p.Port] {
			seen[p.Port] = true
			ports = append(ports, p.Port)
		}
	}
	sort.Slice(ports, func(i, j int) bool {
		if ports[i].Proto != ports[j].Proto {
			return ports[i].Proto < ports[j].Proto
		}
		return ports[i].Num < ports[j].Num
	})
	return ports
}

// tcpFlow is the client's side of a TCP flow.
type tcpFlow struct {
	isn  uint32
	sent uint32 // payload bytes sent after the SYN
}

// Replay sends the packets (resolved by Resolve) at their planned times
// and returns what the kernel did with each. The ruleset must be loaded
// first; Replay starts the listeners and neighbour entries it needs.
func (l *Lab) Replay(pkts []Packet) ([]Outcome, error) {
	if len(pkts) >= 0xfffff {
		return nil, fmt.Errorf("replay: %d packets, more than the tags can name", len(pkts))
	}
	var srcs []netip.Addr
	for _, p := range pkts {
		srcs = append(srcs, p.Src)
	}
	if err := l.Neighbours(srcs); err != nil {
		return nil, err
	}
	if err := l.Listen(Ports(pkts)); err != nil {
		return nil, err
	}
	if err := l.listenInside(); err != nil {
		return nil, err
	}
	flows := map[flowKey]*tcpFlow{}
	out := make([]Outcome, len(pkts))
	payload := []byte("kwl-test")
	start := time.Now()
	wallStart := start.Round(0) // wall clock only, like the kernel's timestamps
	for i, p := range pkts {
		// Sleep first: a Data packet's acknowledgment number comes from
		// the SYN-ACK, which may arrive just before its time.
		l.waitUntil(start.Add(p.At))
		tag := uint32(i + 1)
		q := pkt{src: p.Src, dst: p.Dst, proto: p.Port.Proto, sport: p.SPort, dport: p.Port.Num, tag: tag}
		k := flowKey{src: p.Src, sport: p.SPort, dst: p.Dst, dport: p.Port.Num, proto: p.Port.Proto}
		if p.Port.Proto == lang.TCP {
			f := flows[k]
			if f == nil {
				// A fixed function of the flow, so that runs repeat.
				f = &tcpFlow{isn: uint32(p.SPort)<<16 | uint32(p.Port.Num)}
				flows[k] = f
			}
			switch p.Kind {
			case lang.New:
				// A SYN; the same flow's SYN again is a retransmit, with
				// the same initial sequence number.
				q.flags = flagSYN
				q.seq = f.isn
			case lang.Data:
				q.flags = flagACK | flagPSH
				q.seq = f.isn + 1 + f.sent
				if s, ok := l.wire.synack(k); ok {
					q.ack = s + 1
				}
				q.payload = payload
				f.sent += uint32(len(payload))
			}
			if p.HasFlags {
				q.flags = uint8(p.Flags)
				if q.flags&flagACK != 0 && q.ack == 0 {
					q.ack = f.isn ^ 0x5a5a5a5a // any: no connection knows it
				}
			}
		} else {
			q.payload = payload
			if p.Payload != nil {
				q.payload = p.Payload
			}
		}
		at, err := l.wire.send(build(q))
		if err != nil {
			return nil, err
		}
		l.pump()
		out[i] = Outcome{Packet: p, Sent: at.Sub(start), SentBy: at.Sub(start), Tag: tag}
	}
	// The probe and the answers are written in the receive path of the
	// frame, which has run by the time sendto returns; the pause covers a
	// softirq deferred to ksoftirqd under load. The two packet sockets are
	// read by goroutines that a busy machine may run later than that: the
	// capture is awaited until it holds every packet sent, and the answers
	// until every connection attempt that passed has its SYN-ACK, each for
	// at most settleWait.
	l.waitUntil(time.Now().Add(50 * time.Millisecond))
	//
	// A reject's answer is sent from its packet's receive path, so it
	// follows the packet in the capture; the last packet's answer is
	// known to have been read once a frame sent after it has: the
	// capture is awaited until it holds the end marker.
	if _, err := l.wire.send(endMarker()); err != nil {
		return nil, err
	}
	rx := map[tagKey]time.Time{}
	sent := map[tagKey]bool{}
	for i := range out {
		sent[out[i].key()] = true
	}
	var frames []Frame
	settle(func() bool {
		frames = l.capture.Frames()
		end := false
		for _, f := range frames {
			if f.Out {
				continue
			}
			if isEndMarker(f.Data) {
				end = true
			}
			if q, ok := parseFrame(f.Data); ok && (q.proto == lang.TCP || q.proto == lang.UDP) {
				k := q.key()
				if _, dup := rx[k]; !dup && sent[k] {
					rx[k] = f.Time
				}
			}
		}
		return len(rx) == len(sent) && end
	})
	rejected := rejects(frames)
	v4, v6, err := l.Passed()
	if err != nil {
		return nil, err
	}
	for i := range out {
		o := &out[i]
		if t, ok := rx[o.key()]; ok {
			o.Sent = t.Sub(wallStart)
			o.Seen = true
			o.rx = t
		}
		if o.Src.Unmap().Is4() {
			o.Passed = v4[o.Tag]
		} else {
			o.Passed = v6[o.Tag]
		}
		o.Rejected = !o.Passed && rejected[o.key()]
	}
	settle(func() bool {
		all := true
		for i := range out {
			o := &out[i]
			if o.attempt() && !o.SynAck {
				_, o.SynAck = l.wire.synack(flowKey{src: o.Src, sport: o.SPort, dst: o.Dst, dport: o.Port.Num, proto: lang.TCP})
				all = all && (o.SynAck || !o.Passed)
			}
		}
		return all
	})
	return out, nil
}

// endEtherType is the EtherType of the frame that ends a replay: 0x88b5,
// IEEE 802's for local experiments, which no protocol of the firewall
// takes, so the kernel drops it after its capture sees it.
const endEtherType = 0x88b5

// endMarker returns the frame that ends a replay.
func endMarker() []byte {
	f := make([]byte, 60)
	copy(f[0:], fwMAC)
	copy(f[6:], clMAC)
	binary.BigEndian.PutUint16(f[12:], endEtherType)
	copy(f[14:], "kwl end of replay")
	return f
}

func isEndMarker(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:]) == endEtherType
}

// rejects returns the packets the firewall answered as a reject does,
// from its capture: a TCP reset it sent on a flow answers the flow's
// latest packet before it, and an ICMP destination unreachable (port
// unreachable, code 3) or ICMPv6 one (code 4) quotes the packet's header,
// tag included (nf_send_reset, nf_send_unreach, nf_send_unreach6).
func rejects(frames []Frame) map[tagKey]bool {
	latest := map[flowKey]tagKey{}
	out := map[tagKey]bool{}
	for _, f := range frames {
		p, ok := parseFrame(f.Data)
		if !ok {
			continue
		}
		switch {
		case !f.Out && (p.proto == lang.TCP || p.proto == lang.UDP):
			latest[flowKey{src: p.src, sport: p.sport, dst: p.dst, dport: p.dport, proto: p.proto}] = p.key()
		case f.Out && p.proto == lang.TCP && p.flags&flagRST != 0:
			if k, ok := latest[flowKey{src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, proto: lang.TCP}]; ok {
				out[k] = true
			}
		case f.Out:
			if k, ok := unreachable(f.Data); ok {
				out[k] = true
			}
		}
	}
	return out
}

// unreachable returns the tag of the packet an ICMP port unreachable or
// ICMPv6 port unreachable frame quotes (RFC 792, RFC 4443 3.1: the type,
// the code, a checksum, 4 unused bytes, then the packet from its IP
// header on).
func unreachable(f []byte) (tagKey, bool) {
	if len(f) < 14 {
		return tagKey{}, false
	}
	b := f[14:]
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(b) < 20 || b[9] != 1 {
			return tagKey{}, false
		}
		icmp := b[int(b[0]&0xf)*4:]
		if len(icmp) < 8+20 || icmp[0] != 3 || icmp[1] != 3 {
			return tagKey{}, false
		}
		return tagKey{false, uint32(binary.BigEndian.Uint16(icmp[8+4:]))}, true
	case 0x86dd:
		if len(b) < 40 || b[6] != 58 {
			return tagKey{}, false
		}
		icmp := b[40:]
		if len(icmp) < 8+40 || icmp[0] != 1 || icmp[1] != 4 {
			return tagKey{}, false
		}
		return tagKey{true, binary.BigEndian.Uint32(icmp[8:]) & 0xfffff}, true
	}
	return tagKey{}, false
}

// settleWait bounds how long Replay waits for the packet sockets' readers
// to catch up with the kernel.
const settleWait = 3 * time.Second

// settle calls done until it reports true, every few milliseconds, for at
// most settleWait.
// pump answers the datagrams waiting on the lab's UDP servers (see
// listeners.pump).
func (l *Lab) pump() {
	if l.listeners != nil {
		l.listeners.pump()
	}
}

// waitUntil sleeps until t, answering datagrams every millisecond.
func (l *Lab) waitUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		time.Sleep(min(d, time.Millisecond))
		l.pump()
	}
}

func settle(done func() bool) {
	deadline := time.Now().Add(settleWait)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// LoadNft loads `nft -f` input into the firewall namespace.
func (l *Lab) LoadNft(text string) error {
	_, err := l.FW.RunInput([]byte(text), "nft", "-f", "-")
	return err
}

// LoadIptables loads iptables-restore and ip6tables-restore input into the
// firewall namespace (either may be empty).
func (l *Lab) LoadIptables(v4, v6 string) error {
	if v4 != "" {
		if _, err := l.FW.RunInput([]byte(v4), "iptables-restore"); err != nil {
			return err
		}
	}
	if v6 != "" {
		if _, err := l.FW.RunInput([]byte(v6), "ip6tables-restore"); err != nil {
			return err
		}
	}
	return nil
}
