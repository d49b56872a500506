// Package replay replays a capture through the simulator of a policy, as
// kwl sim does: it keeps the clock from going back, takes packets sent by
// the firewall's own addresses as such, reports the packets of a flow
// whose first packet the policy dropped as part of that blocked flow,
// divides the packets between two simulators when the ruleset keeps them
// apart, and counts what became of them.
//
// A Replay is made with New and run over a capture with Run, or two of
// them side by side with Compare; the counts are read from the Replay
// afterwards. Writing them out is the caller's.
package replay

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// An Engine evaluates packets: the simulator of one backend running one
// policy.
type Engine interface {
	// Eval decides p. p.Time never decreases from one call to the next.
	Eval(p *capture.Packet) Result
}

// Result is what an Engine reports of one evaluated packet.
type Result struct {
	Verdict lang.Verdict
	Stmt    int    // the deciding statement's ID (lang.Ref); 0 when none did
	Explain string // state read and written, for --explain
	// Skip is set when the engine took the packet in (conntrack learned
	// from it) without evaluating it: "sent by the host".
	Skip string
}

// prefetcher is an engine that can read ahead the state a packet will
// need (sim.Sim.Prefetch).
type prefetcher interface {
	Prefetch(ps []capture.Packet)
}

// splitter is an engine whose packets divide into two parts that two
// engines of the same policy evaluate apart, with the results one Engine
// evaluating all of them would give (sim.Split). split reports whether
// a packet belongs to the second part; it is safe for concurrent use.
type splitter interface {
	Split() (split func(*capture.Packet) bool, ok bool)
}

// replayBatch is how many packets are read, and their state prefetched,
// before they are evaluated in order.
const replayBatch = 32

// Warnings are the reader's warnings and the clock's.
func (rp *Replay) Warnings(r *capture.Reader) []string {
	ws := r.Warnings()
	if w := rp.clock.warning(); w != "" {
		ws = append(ws[:len(ws):len(ws)], w)
	}
	return ws
}

// An Outcome is the replay's account of one packet.
// It is small, for it is handed from a lane to the merge for every
// packet.
type Outcome struct {
	Skipped   string // why the packet was not evaluated
	Explain   string // state read and written, for --explain
	Blocked   int    // n of the dropped first packet of this packet's flow, or 0
	Stmt      int    // the deciding statement's ID (lang.Ref); 0 when none did
	Verdict   lang.Verdict
	Evaluated bool // the engine decided the packet (not skipped; of no blocked flow unless Replay.EvalBlocked)
}

// blockedFlow is a flow whose first packet was dropped.
type blockedFlow struct {
	first int   // n of that packet
	stmt  int32 // the statement that dropped it
	gen   int32 // the generation it was (last) blocked in; 0: none
}

// blockedPair holds the blocked flows between two endpoints, one per
// direction (dir[0] from the pair key's first endpoint), so that a packet
// finds both the flow it belongs to and the one it would answer with one
// probe.
type blockedPair struct {
	dir [2]blockedFlow
}

// flowGen is how long (in capture time) a blocked flow is remembered: one
// to two generations, past the minute in which peers retransmit an
// unanswered SYN or a reply.
const flowGen = 60 * time.Second

// Kinds of statements, per statement ID.
const (
	kindNone uint8 = iota
	kindKnock
	kindClose
	kindLimit
	kindAllow
)

var kindName = [...]string{kindNone: "", kindKnock: "knock", kindClose: "close", kindLimit: "limit", kindAllow: "allow"}

// A Replay runs packets through the lanes and keeps the counts. What it
// updates per packet is indexed by statement number or kept in
// open-addressing tables over pointer-free keys.
type Replay struct {
	lane  *lane // the first lane: all packets but those of a second
	clock clock // for Step

	// EvalBlocked has the packets of blocked flows evaluated as well,
	// each with its Outcome.Blocked set, for packets that crossed the
	// firewall after it had dropped their flow's first packet: a test
	// harness that sends them anyway, or a capture taken at the firewall
	// itself. The kernel evaluates such a packet (conntrack has no entry:
	// a TCP packet without SYN is NEW or INVALID), where kwl sim takes
	// it as never sent. Set it before the first Step or Run.
	EvalBlocked bool
	// Live has each packet evaluated, and handed to Run's or Compare's
	// callback, as soon as it is read, rather than in batches: for a
	// capture that arrives as it is made (tcpdump -w - | kwl sim).
	Live bool

	// The policy's statements, by ID (lang.Policy.Refs).
	stmts    []lang.Ref
	counts   [][3]int
	stmtText [][]byte
	stmtKind []uint8
	stmtSvc  []string

	// Packets is how many packets were replayed: Evaluated by the
	// engine, Skipped (not evaluated), and BlockedPackets (of blocked
	// flows).
	Packets, Evaluated, Skipped int
	// Verdicts counts the evaluated packets and those of blocked flows
	// by verdict.
	Verdicts [3]int
	// BlockedPackets is how many packets were of a blocked flow. With
	// EvalBlocked they are among the Evaluated, with their verdicts.
	BlockedPackets int
	// Skips counts the skipped packets by reason.
	Skips   map[string]int
	sources distinctAddrs
	// Opened is each source's first admission through a door.
	Opened map[netip.Addr]Admission
	// Limited counts the drops by a limit, per source.
	Limited    map[netip.Addr]int
	knockPorts [2][1024]uint64 // tcp, udp: bit per port
	// Knocks is how many new connections went to a knock port.
	Knocks   int
	knockers distinctAddrs
}

// An Admission is a packet a door let in.
type Admission struct {
	N    int           // the packet's number
	At   time.Duration // its time
	Rule lang.Ref      // the door
}

// Sources is how many distinct sources sent evaluated packets.
func (rp *Replay) Sources() int { return rp.sources.len() }

// Knockers is how many distinct sources knocked.
func (rp *Replay) Knockers() int { return rp.knockers.len() }

// HeldBack is how many packets the clock held back by more than a second.
func (rp *Replay) HeldBack() int { return rp.clock.held }

// Statement returns the statement that decided o.
func (rp *Replay) Statement(o *Outcome) lang.Ref { return rp.stmts[o.Stmt] }

// Kind says what the statement r is: "knock", "close", "limit", "allow",
// or "" for the others and the zero Ref.
func (rp *Replay) Kind(r lang.Ref) string { return kindName[rp.stmtKind[rp.index(r)]] }

// Service is the service the statement r guards; "" for the zero Ref.
func (rp *Replay) Service(r lang.Ref) string { return rp.stmtSvc[rp.index(r)] }

// index is r's index in the replay's tables: its ID, or 0 for a Ref
// that is not the policy's.
func (rp *Replay) index(r lang.Ref) int {
	if r.ID <= 0 || r.ID >= len(rp.stmts) || rp.stmts[r.ID] != r {
		return 0
	}
	return r.ID
}

// New returns a replay of the policy pol through eng, an engine of it.
func New(pol *lang.Policy, eng Engine) *Replay {
	rp := &Replay{
		stmts:   pol.Refs(),
		Skips:   map[string]int{},
		Opened:  map[netip.Addr]Admission{},
		Limited: map[netip.Addr]int{},
	}
	n := len(rp.stmts)
	rp.counts = make([][3]int, n)
	rp.stmtText = make([][]byte, n)
	rp.stmtKind = make([]uint8, n)
	rp.stmtSvc = make([]string, n)
	for i, r := range rp.stmts {
		if !r.IsZero() {
			rp.stmtText[i] = []byte(r.String())
		}
	}
	kind := func(r lang.Ref, k uint8, s *lang.Service) {
		// A statement of several services names them all.
		if rp.stmtSvc[r.ID] != "" && rp.stmtKind[r.ID] == k {
			rp.stmtSvc[r.ID] += ", " + s.Name
			return
		}
		rp.stmtKind[r.ID], rp.stmtSvc[r.ID] = k, s.Name
	}
	for _, d := range pol.Doors {
		kind(d.Ref, kindKnock, d.Service)
		for _, p := range d.Sequence {
			rp.setKnockPort(p)
		}
	}
	for _, v := range pol.Revokes {
		kind(v.Ref, kindClose, v.Service)
		for _, p := range append(append([]lang.Port(nil), v.Ports...), v.Sequence...) {
			rp.setKnockPort(p)
		}
	}
	for _, l := range pol.Limits {
		kind(l.Ref, kindLimit, l.Service)
	}
	for _, a := range pol.Allows {
		kind(a.Ref, kindAllow, a.Service)
	}
	rp.lane = newLane(eng, n)
	return rp
}

func knockProto(p lang.Proto) int {
	switch p {
	case lang.TCP:
		return 0
	case lang.UDP:
		return 1
	}
	return -1
}

func (rp *Replay) setKnockPort(p lang.Port) {
	if i := knockProto(p.Proto); i >= 0 {
		rp.knockPorts[i][p.Num/64] |= 1 << (p.Num % 64)
	}
}

func (rp *Replay) isKnockPort(proto lang.Proto, port uint16) bool {
	i := knockProto(proto)
	return i >= 0 && rp.knockPorts[i][port/64]&(1<<(port%64)) != 0
}

// isNew reports whether p would start a connection: a TCP SYN without
// ACK, or any UDP datagram or other packet, which conntrack takes as NEW
// when it has no entry.
func isNew(p *capture.Packet) bool {
	if p.Proto == lang.TCP {
		return p.Flags&(capture.SYN|capture.ACK) == capture.SYN
	}
	return true
}

// Step runs one packet through the first lane and counts it: the replay
// one packet at a time, without the pipeline.
func (rp *Replay) Step(p *capture.Packet) Outcome {
	rp.clock.keep(p)
	var pi pairInfo
	rp.lane.evalBlocked = rp.EvalBlocked
	o := rp.lane.step(p, &pi)
	rp.account(p, &o)
	return o
}

// account counts a packet and its outcome.
func (rp *Replay) account(p *capture.Packet, o *Outcome) {
	rp.Packets++
	if o.Skipped != "" {
		rp.Skipped++
		rp.Skips[o.Skipped]++
		return
	}
	if o.Blocked > 0 {
		rp.BlockedPackets++
		if !o.Evaluated {
			rp.Verdicts[lang.Drop]++
			return
		}
	}
	rp.Evaluated++
	rp.Verdicts[o.Verdict]++
	rp.sources.add(p.Src)
	si := o.Stmt
	rp.counts[si][o.Verdict]++
	switch rp.stmtKind[si] {
	case kindKnock:
		if o.Verdict == lang.Accept {
			if _, ok := rp.Opened[p.Src]; !ok {
				rp.Opened[p.Src] = Admission{N: p.N, At: p.Time, Rule: rp.stmts[si]}
			}
		}
	case kindLimit:
		if o.Verdict != lang.Accept {
			rp.Limited[p.Src]++
		}
	}
	if isNew(p) && rp.isKnockPort(p.Proto, p.DPort) {
		rp.Knocks++
		rp.knockers.add(p.Src)
	}
}

// RuleOf returns the text of the statement that decided o.
func (rp *Replay) RuleOf(o *Outcome) []byte { return rp.stmtText[o.Stmt] }

// RuleText returns the text of the statement r, "file:line:col", made
// once.
func (rp *Replay) RuleText(r lang.Ref) []byte { return rp.stmtText[rp.index(r)] }

// A RuleCount is what a statement decided.
type RuleCount struct {
	Rule   lang.Ref // the zero Ref for the packets no statement decided
	Counts [3]int   // by verdict
}

// Rules returns the statements that decided packets, in source order,
// after the packets no statement decided.
func (rp *Replay) Rules() []RuleCount {
	var rs []RuleCount
	for i, c := range rp.counts {
		if c != [3]int{} {
			rs = append(rs, RuleCount{rp.stmts[i], c})
		}
	}
	return rs
}
