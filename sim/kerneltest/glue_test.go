//go:build linux

package kerneltest

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

func init() {
	newModel = func(backend string, pol *lang.Policy, n *nft.Ruleset, i *iptables.Ruleset, clock time.Time) Model {
		return &simModel{backend: backend, pol: pol, nft: n, ipt: i, clock: clock}
	}
}

// simModel predicts with kwl sim's replay (sim/replay) of the simulator
// running the very ruleset the kernel was given (sim.NewNFT,
// sim.NewIptables), with the firewall's addresses as hosts. The
// firewall's answers are fed to it as the lab's hosts send them: a
// SYN-ACK for an admitted SYN, an echo for an admitted datagram, a RST for
// an admitted ACK of a connection the host does not know, each a
// microsecond after the packet it answers and from the address that
// serves the port (the inside host for a forwarded service).
//
// The scenario's packets are all sent, those of a flow whose first packet
// was dropped too, and the kernel evaluates each: the replay evaluates
// them as well (replay.Replay.EvalBlocked) and says which flow they are
// of (Prediction.Blocked).
type simModel struct {
	backend string
	pol     *lang.Policy
	nft     *nft.Ruleset
	ipt     *iptables.Ruleset
	clock   time.Time // of the token sets (Scenario.Clock)
}

// engine returns a fresh simulator of the model's ruleset as a replay
// engine.
func (m *simModel) engine(explain bool) (replay.Engine, error) {
	opts := sim.Options{Hosts: []netip.Addr{FW4, FW6}, Explain: explain, Clock: m.clock}
	var s *sim.Sim
	var err error
	if m.nft != nil {
		s, err = sim.NewNFT(m.nft, opts)
	} else {
		s, err = sim.NewIptables(m.ipt, opts)
	}
	if err != nil {
		return nil, err
	}
	return replay.SimEngine(s, explain), nil
}

// replay returns a replay of the model's ruleset, as kwl sim makes it
// (replay.New), with explanations when explain is set.
func (m *simModel) replay(explain bool) (*replay.Replay, error) {
	eng, err := m.engine(explain)
	if err != nil {
		return nil, err
	}
	return replay.New(m.pol, eng), nil
}

// server returns the address that answers on the port: the inside host of
// a forwarded service, else the firewall.
func (m *simModel) server(p Packet) netip.Addr {
	for _, s := range m.pol.Services {
		if !s.Forward.IsValid() {
			continue
		}
		for _, sp := range s.Ports {
			if sp == p.Port && s.Forward.Is4() == p.Src.Is4() {
				return s.Forward
			}
		}
	}
	return p.Dst
}

func (m *simModel) Predict(pkts []Packet) ([]Prediction, error) {
	rp, err := m.replay(true)
	if err != nil {
		return nil, err
	}
	rp.EvalBlocked = true
	type flow struct {
		src   netip.Addr
		sport uint16
		port  lang.Port
	}
	answered := map[flow]bool{}
	out := make([]Prediction, len(pkts))
	for i, p := range pkts {
		cp := &capture.Packet{N: i + 1, Time: p.At, Src: p.Src, Dst: p.Dst, Proto: p.Port.Proto, SPort: p.SPort, DPort: p.Port.Num, Len: 60}
		if p.Payload != nil {
			cp.UDPLen = uint16(8 + len(p.Payload))
			cp.PayloadN = uint8(copy(cp.Payload[:], p.Payload))
		}
		if p.Port.Proto == lang.TCP {
			cp.Flags = capture.SYN
			if p.Kind == lang.Data {
				cp.Flags = capture.ACK | capture.PSH
			}
			if p.HasFlags {
				cp.Flags = capture.TCPFlags(p.Flags)
			}
		}
		o := rp.Step(cp)
		out[i] = Prediction{Verdict: o.Verdict, Rule: rp.Statement(&o), Explain: o.Explain, Blocked: o.Blocked}
		if o.Skipped != "" {
			out[i].Explain = "skipped: " + o.Skipped
		}
		if o.Verdict != lang.Accept || !o.Evaluated {
			continue
		}
		f := flow{p.Src, p.SPort, p.Port}
		// The answer carries the packet's number, as in kwl test: a host's
		// packet is skipped by the replay, a forwarded one evaluated.
		reply := &capture.Packet{N: i + 1, Time: p.At + time.Microsecond, Src: m.server(p), Dst: p.Src, Proto: p.Port.Proto, SPort: p.Port.Num, DPort: p.SPort, Len: 60}
		switch {
		case p.Port.Proto == lang.UDP:
			// The echo answers every datagram.
		case p.Kind == lang.New:
			// The listener: a SYN-ACK to a SYN, a RST to an ACK (a scan's
			// probe), nothing to the rest.
			fl, ok := sim.HostAnswer(cp)
			if !ok {
				continue
			}
			reply.Flags = fl
		case answered[f]:
			continue // an ACK of a known connection: the host's ACK changes nothing
		case p.HasFlags && cp.Flags&capture.ACK == 0:
			continue // no ACK, no connection: the listener discards it
		default:
			// An ACK the host has no connection for: it resets.
			reply.Flags = capture.RST
		}
		answered[f] = true
		rp.Step(reply)
	}
	return out, nil
}
