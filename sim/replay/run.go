package replay

import (
	"net/netip"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// Run replays the packets of r and calls each for every packet in
// capture order, after counting it. When second is not nil and rp's
// engine can divide the packets (sim.Split), second, an engine of the
// same policy, evaluates one part of them on a goroutine of its own; the
// outcomes are the same as with one engine. Run returns the reader's
// error: io.EOF at the end.
func (rp *Replay) Run(r *capture.Reader, second Engine, each func(p *capture.Packet, o *Outcome)) error {
	lanes := []*lane{rp.lane}
	var split func(*capture.Packet) bool
	if sp, ok := rp.lane.eng.(splitter); ok && second != nil {
		if f, ok := sp.Split(); ok {
			split = f
			lanes = append(lanes, newLane(second, rp.lane.stmts))
		}
	}
	for _, l := range lanes {
		l.evalBlocked = rp.EvalBlocked
	}
	return pipeline(r, lanes, split, &rp.clock, rp.Live, func(pt *part, i int) {
		p, o := &pt.ps[i], &pt.out[i]
		if i%replayBatch == 0 {
			rp.sources.prefetch(pt.ps[i:min(i+replayBatch, pt.n)])
		}
		rp.account(p, o)
		each(p, o)
	})
}

// Access counts, for one source, the packets whose verdict differs
// between two replays of a capture.
type Access struct {
	Gained int // dropped or rejected by the old policy, accepted by the new
	Lost   int // accepted by the old policy, dropped or rejected by the new
	Other  int // dropped by one, rejected by the other
}

// A Comparison is what two replays of one capture disagree on.
type Comparison struct {
	// Differ is how many packets have verdicts that Differs.
	Differ int
	// Sources holds the Access of every source that sent such a packet.
	Sources map[netip.Addr]*Access
}

// Differs reports whether a packet's outcomes in two replays have
// different verdicts. A packet skipped by either does not differ.
func Differs(o1, o2 *Outcome) bool {
	return o1.Skipped == "" && o2.Skipped == "" && o1.Verdict != o2.Verdict
}

// add counts a packet whose outcomes Differ.
func (c *Comparison) add(p *capture.Packet, o1, o2 *Outcome) {
	c.Differ++
	a := c.Sources[p.Src]
	if a == nil {
		a = &Access{}
		c.Sources[p.Src] = a
	}
	switch {
	case o2.Verdict == lang.Accept:
		a.Gained++
	case o1.Verdict == lang.Accept:
		a.Lost++
	default:
		a.Other++
	}
}

// Compare replays the packets of r through two replays, old and new, in
// one pass, each with its own engine and blocked flows, and calls each
// (when not nil) for every packet in capture order with its outcomes in
// both, after counting them. old's engine runs on a goroutine of its own.
// Compare returns the packets and sources whose verdicts differ, and the
// reader's error: io.EOF at the end; the clock's warnings are old's.
func Compare(r *capture.Reader, old, new *Replay, each func(p *capture.Packet, o1, o2 *Outcome)) (*Comparison, error) {
	c := &Comparison{Sources: map[netip.Addr]*Access{}}
	old.lane.evalBlocked, new.lane.evalBlocked = old.EvalBlocked, new.EvalBlocked
	err := pipeline(r, []*lane{old.lane}, nil, &old.clock, old.Live || new.Live, func(pt *part, i int) {
		p, o1 := &pt.ps[i], &pt.out[i]
		var pi pairInfo
		o2 := new.lane.step(p, &pi)
		old.account(p, o1)
		new.account(p, &o2)
		if Differs(o1, &o2) {
			c.add(p, o1, &o2)
		}
		if each != nil {
			each(p, o1, &o2)
		}
	})
	return c, err
}
