package audit

import (
	"net/netip"
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
		tok := tl.knock(victim, d)
		if tl.send(victim, svc) != lang.Accept {
			continue // the client's own knock does not open it
		}
		if d.Secret != nil {
			out = append(out, replayToken(tl, d, o, tok, victim, spy))
			continue
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
			Hint: "a static sequence is a password sent in clear: a secret knock (knock udp/PORT secret \"FILE\" ..., nft) cannot be replayed; else keep the lifetime short, let the service authenticate (ssh keys), and limit who may knock with a from list"})
	}
	return out, nil
}

// replayToken sends a secret door's sniffed token again: at once from
// the eavesdropper's address, and, when the door closes while the token
// would still be taken, from the client's own. Opened is 0 when neither
// copy opens the door: the replay is fixed.
func replayToken(tl *timeline, d *lang.Door, o Options, tok []byte, victim, spy netip.Addr) Finding {
	svc := d.Service.Ports[0]
	opened := false
	if tl.send(spy, svc) != lang.Accept { // else the client's door is the eavesdropper's (per source/N)
		tl.token(spy, d.Sequence[0], tok)
		opened = tl.send(spy, svc) == lang.Accept
	}
	// The simulation's clock starts a window: the token is taken until
	// the end of the window after it.
	if closed := tl.now + d.Lifetime + time.Second; closed < (lang.TokenSkew+1)*lang.TokenWindow {
		tl.now = closed
		tl.token(victim, d.Sequence[0], tok)
		opened = opened || tl.send(victim, svc) == lang.Accept
	}
	f := Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Backend: o.Backend, Effect: Replays,
		Attack: "a client's token, sniffed and sent again from another address, and from its own after its door closed",
		Trials: 1, Packets: tl.pkts}
	if opened {
		f.Opened, f.Low, f.High = 1, 1, 1
	}
	return f
}
