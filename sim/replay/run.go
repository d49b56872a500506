package replay

import "kwl.dev/kwl/sim/capture"

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
			lanes = append(lanes, newLane(second))
		}
	}
	for _, l := range lanes {
		l.evalBlocked = rp.EvalBlocked
	}
	return pipeline(r, lanes, split, &rp.clock, func(pt *part, i int) {
		p, o := &pt.ps[i], &pt.out[i]
		if i%replayBatch == 0 {
			rp.sources.prefetch(pt.ps[i:min(i+replayBatch, pt.n)])
		}
		rp.account(p, o)
		each(p, o)
	})
}

// Compare replays the packets of r through two replays in one pass and
// calls each for every packet in capture order with its outcomes in
// both, after counting them. old's engine runs on a goroutine of its
// own. Compare returns the reader's error: io.EOF at the end; the
// clock's warnings are old's.
func Compare(r *capture.Reader, old, new *Replay, each func(p *capture.Packet, o1, o2 *Outcome)) error {
	old.lane.evalBlocked, new.lane.evalBlocked = old.EvalBlocked, new.EvalBlocked
	return pipeline(r, []*lane{old.lane}, nil, &old.clock, func(pt *part, i int) {
		p, o1 := &pt.ps[i], &pt.out[i]
		var pi pairInfo
		o2 := new.lane.step(p, &pi)
		old.account(p, o1)
		new.account(p, &o2)
		each(p, o1, &o2)
	})
}
