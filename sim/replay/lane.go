package replay

import (
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// A lane evaluates one part of a capture: an engine and the blocked
// flows of the packets it sees. kwl sim runs one lane, or two when the
// engine can divide the packets (splitter), each on a goroutine of its
// own; what is counted of the packets is kept by the replay, apart from
// the lanes.
type lane struct {
	eng   Engine
	pf    prefetcher // eng, when it can prefetch
	stmts int        // how many statement IDs there are
	// Blocked flows, in generations of flowGen of capture time: a flow
	// is remembered while its generation is the current or the previous
	// one, so that memory follows the traffic of the last minutes and not
	// the length of the capture. Each of the two has a table of its own,
	// by parity, emptied as a whole when the generation after next
	// begins. The generation is a function of the packet's time alone, so
	// that two lanes agree on it.
	blocked [2]itable[pairKey, blockedPair]
	gen     int32     // the current generation, from 2 (0 marks no flow)
	sink    uint64    // what prefetch reads
	pf64    []*uint64 // prefetch's addresses
	pairs   [replayBatch]pairInfo
	// evalBlocked: the packets of blocked flows are evaluated too
	// (Replay.EvalBlocked).
	evalBlocked bool
}

// pairInfo is a packet's pair key, its direction in it and the key's
// hash in the blocked flows, computed when first needed: a lane with no
// blocked flow needs none of them.
type pairInfo struct {
	key pairKey
	h   uint32
	dir int
	ok  bool
}

func (pi *pairInfo) of(p *capture.Packet) *pairInfo {
	if !pi.ok {
		key, dir := pairOf(p.Src, p.SPort, p.Dst, p.DPort, p.Proto)
		*pi = pairInfo{key: key, h: hash32(key, blockedSeed), dir: dir, ok: true}
	}
	return pi
}

// newLane returns a lane of eng, whose results name statements with IDs
// below stmts.
func newLane(eng Engine, stmts int) *lane {
	l := &lane{eng: eng, stmts: stmts, gen: 2}
	// Both tables hash with one seed, so that one hash of a packet's
	// pair key serves both.
	l.blocked[0].seed, l.blocked[1].seed = blockedSeed, blockedSeed
	l.pf, _ = eng.(prefetcher)
	return l
}

// run evaluates a part's packets: a batch at a time, it touches the state
// each packet will need, so that the cache misses overlap, then
// evaluates the packets in order.
func (l *lane) run(pt *part) {
	for b := 0; b < pt.n; b += replayBatch {
		e := min(b+replayBatch, pt.n)
		pis := l.pairs[:e-b]
		clear(pis)
		l.prefetch(pt.ps[b:e], pis)
		for i := b; i < e; i++ {
			pt.out[i] = l.step(&pt.ps[i], &pis[i-b])
		}
	}
}

// generation returns the generation of time t.
func generation(t time.Duration) int32 { return int32(t/flowGen) + 2 }

// step evaluates p, whose pair key pi holds or will hold; p.Time must not
// go back.
func (l *lane) step(p *capture.Packet, pi *pairInfo) Outcome {
	if p.Skipped != "" {
		return Outcome{Skipped: p.Skipped}
	}
	if g := generation(p.Time); g != l.gen {
		if g > l.gen+1 {
			// Nothing of the last generation is kept either.
			l.blocked[(g-1)&1].reset()
		}
		l.blocked[g&1].reset()
		l.gen = g
	}
	// The pair's entries in this generation and the last one: a direction
	// is blocked by the latest of them that names it.
	var es [2]*blockedPair
	if l.blocked[0].n > 0 || l.blocked[1].n > 0 {
		pi.of(p)
		for k := range es {
			if t := &l.blocked[(l.gen-int32(k))&1]; t.n > 0 {
				es[k] = t.getH(pi.key, pi.h)
			}
		}
	}
	var blockedBy blockedFlow // the blocked flow p is of, when evaluated anyway
	if es[0] != nil || es[1] != nil {
		key, dir := pi.key, pi.dir
		flow := func(d int) blockedFlow {
			if es[0] != nil && es[0].dir[d].gen != 0 {
				return es[0].dir[d]
			}
			if es[1] != nil {
				return es[1].dir[d]
			}
			return blockedFlow{}
		}
		// A packet from an endpoint to itself is its own reply.
		self := key.a == key.b && key.family == 3*(key.family&1) && key.ports>>16 == key.ports&0xffff
		if b := flow(1 - dir); b.gen != 0 || (self && flow(dir).gen != 0) {
			if self {
				b = flow(dir)
			}
			// A reply to a connection the firewall stopped never happens.
			blockedBy = b
		} else if b := flow(dir); b.gen != 0 && !isNew(p) {
			blockedBy = b
		}
		if blockedBy.gen != 0 && !l.evalBlocked {
			return l.blockedPacket(blockedBy)
		}
	}
	res := l.eng.Eval(p)
	if res.Skip != "" {
		return Outcome{Skipped: res.Skip}
	}
	si := res.Stmt
	if si < 0 || si >= l.stmts {
		si = 0 // not a statement of the policy
	}
	if res.Verdict != lang.Accept && isNew(p) {
		pi.of(p)
		e := l.blocked[l.gen&1].putH(pi.key, pi.h)
		e.dir[pi.dir] = blockedFlow{first: p.N, stmt: int32(si), gen: l.gen}
	} else if res.Verdict == lang.Accept {
		for k, e := range es {
			if e != nil {
				e.dir[pi.dir] = blockedFlow{}
				if e.dir[1-pi.dir].gen == 0 {
					l.blocked[(l.gen-int32(k))&1].delH(pi.key, pi.h)
				}
			}
		}
	}
	return Outcome{Evaluated: true, Verdict: res.Verdict, Stmt: si, Explain: res.Explain, Blocked: blockedBy.first}
}

func (l *lane) blockedPacket(b blockedFlow) Outcome {
	return Outcome{Verdict: lang.Drop, Stmt: int(b.stmt), Blocked: b.first}
}

// prefetch reads the slots the packets' flows have in the blocked flows
// and what the engine will read for them: first the addresses, then the
// reads in a loop of their own, so that many reads are in flight at
// once. pis are the packets' pair keys, computed here when some flow of
// the lane was blocked.
func (l *lane) prefetch(ps []capture.Packet, pis []pairInfo) {
	a64 := l.pf64[:0]
	if l.blocked[0].n > 0 || l.blocked[1].n > 0 {
		for i := range ps {
			if ps[i].Skipped != "" {
				continue
			}
			h := int(pis[i].of(&ps[i]).h)
			for k := range l.blocked {
				if t := &l.blocked[k]; t.n > 0 {
					a64 = append(a64, &t.slots[h&(len(t.slots)-1)])
				}
			}
		}
	}
	var sum uint64
	for _, a := range a64 {
		sum += *a
	}
	l.sink += sum
	l.pf64 = a64
	if l.pf != nil {
		l.pf.Prefetch(ps)
	}
}
