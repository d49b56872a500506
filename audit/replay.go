package audit

import (
	"time"

	"kwl.dev/kwl/lang"
)

// Replay runs the replay attack against every door of p: a client knocks
// and uses its door, the door closes, and an eavesdropper sends the
// client's knocks again, from its own address. A static sequence is the
// same every time and is not bound to the address that sends it, so the
// door opens for the eavesdropper. The finding is reported, not failed
// (Fails): it holds for every static sequence.
func Replay(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	var out []Finding
	for _, d := range p.Doors {
		victim, ok := source(d.Family, d.From, victim4, victim6)
		if !ok {
			continue
		}
		// The eavesdropper sends from an address the door lets knock:
		// another in the from list, when there is one.
		spy, _ := source(d.Family, d.From, scanner4, scanner6)
		svc := d.Service.Ports[0]
		tl, err := newTimeline(p, o)
		if err != nil {
			return nil, err
		}
		tl.knock(victim, d)
		if tl.send(victim, svc) != lang.Accept {
			continue // the client's own knock does not open it
		}
		tl.now += d.Lifetime + time.Second
		if tl.send(spy, svc) == lang.Accept {
			continue // the door is open to the eavesdropper anyway
		}
		for _, k := range d.Sequence {
			tl.send(spy, k)
		}
		if tl.send(spy, svc) != lang.Accept {
			continue
		}
		out = append(out, Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Backend: o.Backend, Effect: Replays,
			Attack: "a client's knocks, sniffed and sent again from another address after its door closed, open the door for the sender",
			Opened: 1, Low: 1, High: 1, Trials: 1, Packets: tl.pkts,
			Hint: "a static sequence is a password sent in clear: keep the lifetime short and let the service authenticate (ssh keys); from lists limit who can use a sniffed knock"})
	}
	return out, nil
}
