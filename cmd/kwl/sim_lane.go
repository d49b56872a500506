package main

import (
	"encoding/binary"
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
	eng   engine
	pf    prefetcher // eng, when it can prefetch
	stmts []lang.Pos // the engine's statements, read-only
	// Blocked flows, in generations of flowGen of capture time: a flow
	// is remembered while its generation is the current or the previous
	// one, so that memory follows the traffic of the last minutes and not
	// the length of the capture. Entries of older generations are dropped
	// when met and by a sweep at each insertion. The generation is a
	// function of the packet's time alone, so that two lanes agree on it.
	blocked itable[pairKey, blockedPair]
	filter  genFilter // says which pairs cannot be in blocked
	gen     int32     // the current generation, from 2 (0 marks no flow)
	sink    uint64    // what prefetch reads
	pf64    []*uint64 // prefetch's addresses
}

func newLane(eng engine) *lane {
	l := &lane{eng: eng, stmts: eng.Statements(), gen: 2}
	// The blocked flows hash with the filter's seed, so that one hash of
	// a packet's pair key serves both.
	l.blocked.seed = filterSeed
	l.pf, _ = eng.(prefetcher)
	return l
}

// generation returns the generation of time t.
func generation(t time.Duration) int32 { return int32(t/flowGen) + 2 }

// step evaluates p, whose pair key, direction and key's hash with
// filterSeed are given; p.Time must not go back.
func (l *lane) step(p *capture.Packet, key pairKey, dir int, fh uint64) outcome {
	if p.Skipped != "" {
		return outcome{skipped: p.Skipped}
	}
	if g := generation(p.Time); g != l.gen {
		if g > l.gen+1 {
			// Nothing of the last generation is kept either.
			l.filter.forget(g - 1)
		}
		l.filter.forget(g)
		l.gen = g
	}
	bh := uint32(fh >> 32) // the key's hash in the blocked flows (same seed)
	if l.blocked.len() > 0 && l.filter.mayHave(fh) {
		if e := l.blocked.getH(key, bh); e != nil {
			// A packet from an endpoint to itself is its own reply.
			self := key.a == key.b && key.family == 3*(key.family&1) && key.ports>>16 == key.ports&0xffff
			if b := &e.dir[1-dir]; !l.stale(b) || (self && !l.stale(&e.dir[dir])) {
				if self {
					b = &e.dir[dir]
				}
				// A reply to a connection the firewall stopped never happens.
				return l.blockedPacket(*b)
			}
			if b := &e.dir[dir]; !l.stale(b) && !isNew(p) {
				return l.blockedPacket(*b)
			}
		}
	}
	res := l.eng.Eval(p)
	if res.Skip != "" {
		return outcome{skipped: res.Skip}
	}
	si := res.Stmt
	if si < 0 || si >= len(l.stmts) || l.stmts[si] != res.Rule {
		si = -1 // the replay numbers it
	}
	if res.Verdict != lang.Accept && isNew(p) {
		e := l.blocked.putH(key, bh)
		e.dir[dir] = blockedFlow{first: p.N, stmt: int32(max(si, 0)), gen: l.gen}
		l.filter.add(fh, l.gen)
		l.blocked.sweep(4, l.stalePair)
	} else if res.Verdict == lang.Accept && l.blocked.len() > 0 && l.filter.mayHave(fh) {
		if e := l.blocked.getH(key, bh); e != nil {
			e.dir[dir] = blockedFlow{}
			if l.stalePair(e) {
				l.blocked.delH(key, bh)
			}
		}
	}
	return outcome{evaluated: true, res: res, stmt: si}
}

// stale reports whether a blocked flow is absent or older than the
// previous generation.
func (l *lane) stale(b *blockedFlow) bool { return b.gen < l.gen-1 }

func (l *lane) stalePair(e *blockedPair) bool { return l.stale(&e.dir[0]) && l.stale(&e.dir[1]) }

func (l *lane) blockedPacket(b blockedFlow) outcome {
	return outcome{res: simResult{Verdict: lang.Drop, Rule: l.stmts[b.stmt], Stmt: int(b.stmt)}, stmt: int(b.stmt), blocked: b.first}
}

// prefetch reads the slots the packets' flows have in the blocked flows
// and what the engine will read for them: first the addresses, then the
// reads in a loop of their own, so that many reads are in flight at
// once. hashes are the packets' pair keys' hashes with filterSeed.
func (l *lane) prefetch(ps []capture.Packet, hashes []uint64) {
	a64 := l.pf64[:0]
	bl, f := &l.blocked, &l.filter
	if bl.n > 0 {
		for i := range ps {
			if ps[i].Skipped != "" {
				continue
			}
			h := hashes[i]
			a64 = append(a64, &bl.slots[int(uint32(h>>32))&(len(bl.slots)-1)])
			if f.words != nil {
				w, _ := f.pos(h)
				a64 = append(a64, &f.words[w])
			}
		}
		// The sweep of the blocked flows looks at 4 entries per blocked
		// flow: read the slots of the stale ones among the next entries.
		for k, i := 0, bl.cursor; k < len(ps)*2; k++ {
			if i >= len(bl.entries) {
				i = 0
			}
			if e := &bl.entries[i]; e.used && l.stalePair(&e.val) {
				a64 = append(a64, &bl.slots[int(bl.hash32(e.key))&(len(bl.slots)-1)])
			}
			i++
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

// prefetchSources reads the slots the sources of the packets have in
// the replay's source set.
func (rp *replay) prefetchSources(ps []capture.Packet) {
	v4, v6 := &rp.sources.v4, &rp.sources.v6
	var sum uint64
	for i := range ps {
		p := &ps[i]
		if p.Skipped != "" {
			continue
		}
		if p.Src.Is4() {
			if v4.n > 0 {
				b := p.Src.As4()
				k := v4Key(binary.BigEndian.Uint32(b[:]))
				sum += uint64(v4.slots[int(k.hash(v4.seed))&(len(v4.slots)-1)].key)
			}
		} else if v6.n > 0 {
			k := keyOfAddr(p.Src)
			sum += v6.slots[int(v6Key{k.hi, k.lo}.hash(v6.seed))&(len(v6.slots)-1)].key.lo
		}
	}
	rp.sink += sum
}
