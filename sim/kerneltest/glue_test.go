//go:build linux

package kerneltest

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

func init() {
	newModel = func(backend string, pol *lang.Policy, n *nft.Ruleset, i *iptables.Ruleset) Model {
		return &simModel{backend: backend, pol: pol, nft: n, ipt: i}
	}
}

// simModel predicts with kwl's simulator running the very ruleset the
// kernel was given (sim.NewNFT, sim.NewIptables). The firewall's answers
// are fed to it as the lab's hosts send them: a SYN-ACK for an admitted
// SYN, an echo for an admitted datagram, a RST for an admitted ACK of a
// connection the host does not know, each a microsecond after the packet
// it answers and from the address that serves the port (the inside host
// for a forwarded service).
type simModel struct {
	backend string
	pol     *lang.Policy
	nft     *nft.Ruleset
	ipt     *iptables.Ruleset
}

func (m *simModel) newSim() (*sim.Sim, error) {
	opts := sim.Options{Hosts: []netip.Addr{FW4, FW6}, Explain: true}
	if m.nft != nil {
		return sim.NewNFT(m.nft, opts)
	}
	return sim.NewIptables(m.ipt, opts)
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
	s, err := m.newSim()
	if err != nil {
		return nil, err
	}
	type flow struct {
		src   netip.Addr
		sport uint16
		port  lang.Port
	}
	answered := map[flow]bool{}
	out := make([]Prediction, len(pkts))
	for i, p := range pkts {
		cp := &capture.Packet{N: i + 1, Time: p.At, Src: p.Src, Dst: p.Dst, Proto: p.Port.Proto, SPort: p.SPort, DPort: p.Port.Num, Len: 60}
		if p.Port.Proto == lang.TCP {
			cp.Flags = capture.SYN
			if p.Kind == lang.Data {
				cp.Flags = capture.ACK | capture.PSH
			}
			if p.HasFlags {
				cp.Flags = capture.TCPFlags(p.Flags)
			}
		}
		r := s.Eval(cp)
		out[i] = Prediction{Verdict: r.Verdict, Rule: r.Rule, Explain: fmt.Sprintf("%s, %s: %s", r.Hook, r.State, r.Explain())}
		if r.Verdict != lang.Accept {
			continue
		}
		f := flow{p.Src, p.SPort, p.Port}
		reply := &capture.Packet{Time: p.At + time.Microsecond, Src: m.server(p), Dst: p.Src, Proto: p.Port.Proto, SPort: p.Port.Num, DPort: p.SPort, Len: 60}
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
		s.Eval(reply)
	}
	return out, nil
}
