// Package sim is kwl's discrete-time packet simulator. It executes the
// rulesets that compile/nft and compile/iptables produce (not the IR), so
// that a bug in lowering shows up in simulation too, with a model of each
// kernel mechanism the rulesets rely on:
//
//   - conntrack (conntrack.go): flows keyed by their tuples, NEW until a
//     reply has been seen, confirmation after the last hook, the kernel's
//     default timeouts;
//   - nf_tables (nftexec.go): base chains by hook and priority, rules
//     evaluated expression by expression, dynamic sets with size and
//     per-element timeouts, limit token buckets in nanoseconds;
//   - x_tables (iptexec.go, recent.go): builtin chains and policies, jumps
//     and returns, the recent match (xt_recent) with its 100-entry LRU and
//     ring of jiffies stamps, the limit match (xt_limit) in credits.
//
// Time is the packet's Time field, nanoseconds since the start of the
// simulation; the kernel's jiffies are derived from it at HZ=250 (the
// target machines' CONFIG_HZ) wherever the kernel counts in jiffies.
// Nothing sleeps and nothing reads the wall clock.
//
// A Sim holds all state; Eval does not allocate once the state has
// reached its working size, unless Options.Explain asks for explanations.
// RunTest runs a policy's test block on a fresh Sim.
package sim

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim/capture"
)

// HZ is the kernel tick rate the models assume (CONFIG_HZ=250): jiffies
// advance every 4 ms. xt_recent stamps, nft set timeouts, conntrack
// timeouts and xt_limit credits are counted in jiffies.
const HZ = 250

// jiffy is the length of one jiffy.
const jiffy = time.Second / HZ

// jiffies converts a simulated time into jiffies since the start of the
// simulation. The kernel's jiffies have an arbitrary phase against the
// packets' times; the model puts a tick at time 0.
func jiffies(t time.Duration) int64 {
	if t < 0 {
		return 0
	}
	return int64(t / jiffy)
}

// Options configure a Sim.
type Options struct {
	// Hosts are the firewall's own addresses. A packet to one of them
	// goes through the input hook, any other through forward. When Hosts
	// is empty every packet is taken as addressed to the firewall, except
	// replies of known flows and packets that DNAT sent elsewhere.
	Hosts []netip.Addr
	// Explain records, for every packet, the state the rules read and
	// wrote (Result.Events). It costs allocations; leave it off for
	// throughput.
	Explain bool
	// Clock is the wall-clock time of the simulation's time 0, when the
	// token sets of secret knocks are loaded; Run takes it from the
	// test's Start instead.
	Clock time.Time
	// Secret returns the secret in a secret knock's file; nil: the
	// stand-in secrets (secret.StandIn) that test blocks use.
	Secret func(path string) ([]byte, error)
	// Horizon is how far past Clock the token sets hold tokens, as
	// deploy's --hours; 0: DefaultHorizon.
	Horizon time.Duration
}

// DefaultHorizon is how far ahead of the clock a simulation's token sets
// hold tokens unless Options.Horizon says otherwise.
const DefaultHorizon = time.Hour

// Hook names where the simulator evaluated a packet.
type Hook uint8

// The hooks a packet can end in.
const (
	HookInput   Hook = iota // addressed to the firewall
	HookForward             // routed through the firewall
	// HookOutput: sent by the firewall itself (a reply of a flow it
	// terminates, or a packet from one of Hosts). kwl hooks nothing
	// there: the packet is accepted without evaluation, and conntrack
	// learns from it.
	HookOutput
)

func (h Hook) String() string {
	switch h {
	case HookInput:
		return "input"
	case HookForward:
		return "forward"
	}
	return "output"
}

// Result is what the simulator decided for one packet.
type Result struct {
	Verdict lang.Verdict
	// Rule is the statement whose rule gave the final verdict; zero when
	// a chain policy decided or a rule that belongs to no statement did
	// (the established-accept).
	Rule lang.Ref
	// Comment is the comment of the deciding rule, or "policy CHAIN".
	Comment string
	Hook    Hook
	// State is the packet's conntrack state as the rules saw it: "new",
	// "established", "invalid".
	State string
	// Events are short notes of the state the packet read and wrote, in
	// order ("door_ssh_4: added 198.51.100.10, expires at 61s"). Only
	// with Options.Explain; the slice is reused by the next Eval.
	Events []string
}

// Explain joins the events in one line.
func (r *Result) Explain() string { return joinEvents(r.Events) }

// engine is one backend's executor.
type engine interface {
	// prerouting runs the prerouting hook; nat chains run only when
	// p.fresh (the packet creates its flow).
	prerouting(s *Sim, p *pkt) (lang.Verdict, bool)
	// filter runs the input or forward hook.
	filter(s *Sim, p *pkt, h Hook) lang.Verdict
	// gc runs the periodic garbage collection due by now.
	gc(s *Sim, now time.Duration)
	reset()
}

// Sim is a simulated firewall: a ruleset with its state (flows, sets,
// lists, buckets). It is not safe for concurrent use.
type Sim struct {
	backend string
	opts    Options
	hosts   map[netip.Addr]bool
	ct      conntrack
	eng     engine
	p       pkt
	res     Result
	events  []string
	now     time.Duration     // the latest packet time seen
	clock   time.Time         // the wall-clock time of time 0
	keys    map[string][]byte // the secrets of secret knocks, by file
	sink    uint64            // what Prefetch reads goes here, so that the reads stay
	pf      []*uint64         // Prefetch's addresses
	pfc     []*conn           // the entries the sweep looks at next
	pfEnd   int               // where the entries Prefetch read end
}

// New lowers a checked policy for a backend of the registry
// (compile.Lookup) and returns a simulator running the lowered ruleset.
// The diagnostics are the lowering's; they hold errors only when the
// backend cannot compile the policy, and then the Sim is nil.
func New(backend string, p *lang.Policy, opts Options) (*Sim, lang.Diagnostics) {
	b, ok := compile.Lookup(backend)
	if !ok {
		var d lang.Diagnostics
		d.Add(lang.Pos{File: p.File}, lang.Error, "", compile.UnknownError(backend).Error(), "")
		return nil, d
	}
	rs, own := b.Lower(p)
	diags := compile.With(p, own)
	if diags.HasErrors() {
		return nil, diags
	}
	s, err := Exec(rs, opts)
	if err != nil {
		diags.Add(lang.Pos{File: p.File}, lang.Error, "", err.Error(), "")
		return nil, diags
	}
	return s, diags
}

// Exec returns a simulator running a ruleset of any backend of the
// registry as it is; a ruleset the simulator has no executor for is an
// error.
func Exec(rs compile.Ruleset, opts Options) (*Sim, error) {
	switch rs := rs.(type) {
	case *nft.Ruleset:
		return NewNFT(rs, opts)
	case *iptables.Ruleset:
		return NewIptables(rs, opts)
	}
	return nil, fmt.Errorf("sim: no executor for a %T", rs)
}

// NewNFT returns a simulator running an nft ruleset as it is (tests and the
// kernel suite use it to run hand-built or modified rulesets).
func NewNFT(rs *nft.Ruleset, opts Options) (*Sim, error) {
	e, err := compileNFT(rs)
	if err != nil {
		return nil, err
	}
	s := newSim(nft.Name, e, opts)
	if len(e.tokens) > 0 {
		for _, ts := range e.tokens {
			if _, err := s.key(ts.src.Secret); err != nil {
				return nil, err
			}
		}
		s.Reset()
	}
	return s, nil
}

// key returns the secret of a secret knock's file: Options.Secret's, or
// the stand-in.
func (s *Sim) key(path string) ([]byte, error) {
	if k, ok := s.keys[path]; ok {
		return k, nil
	}
	k := secret.StandIn(path)
	if s.opts.Secret != nil {
		var err error
		if k, err = s.opts.Secret(path); err != nil {
			return nil, err
		}
	}
	if s.keys == nil {
		s.keys = map[string][]byte{}
	}
	s.keys[path] = k
	return k, nil
}

// TokenAt returns the token a client of the secret knock whose secret
// is in the file path sends at time at of the simulation: that of the
// window at Options.Clock plus at, under the secret the simulation runs
// with.
func (s *Sim) TokenAt(path string, at time.Duration) ([secret.TokenSize]byte, error) {
	key, err := s.key(path)
	if err != nil {
		return [secret.TokenSize]byte{}, err
	}
	return secret.Token(key, secret.Window(s.clock.Add(at), lang.TokenWindow)), nil
}

// tokenOf returns the payload of a test step's token datagram
// (StepToken), under the secret the simulation runs with.
func (s *Sim) tokenOf(st *lang.Step) ([secret.TokenSize]byte, error) {
	key, err := s.key(st.Secret.Path)
	if err != nil {
		return [secret.TokenSize]byte{}, err
	}
	return StepToken(key, s.clock, st), nil
}

// StepToken returns the payload of a test step's token datagram, in a
// test that starts at start, under the secret key: the token of the
// step's window, of a window that ended before it (stale), or of another
// secret (forged).
func StepToken(key []byte, start time.Time, st *lang.Step) [secret.TokenSize]byte {
	w := secret.Window(start.Add(st.At), lang.TokenWindow)
	switch st.Token {
	case lang.StaleToken:
		w -= lang.TokenSkew + 1
	case lang.ForgedToken:
		key = secret.StandIn(st.Secret.Path + " forged")
	}
	return secret.Token(key, w)
}

// NewIptables returns a simulator running an iptables ruleset as it is.
func NewIptables(rs *iptables.Ruleset, opts Options) (*Sim, error) {
	e, err := compileIptables(rs)
	if err != nil {
		return nil, err
	}
	return newSim(iptables.Name, e, opts), nil
}

func newSim(backend string, e engine, opts Options) *Sim {
	s := &Sim{backend: backend, opts: opts, eng: e, hosts: map[netip.Addr]bool{}, clock: opts.Clock}
	for _, h := range opts.Hosts {
		s.hosts[h.Unmap()] = true
	}
	s.ct.init()
	return s
}

// Prefetch reads the parts of the state that the packets of pks are
// likely to need (the slot of their flow in the conntrack index, the
// index slots of the flows the sweep will remove next), changing
// nothing. A caller that has a batch of packets ahead calls it before
// evaluating them, so that their cache misses overlap instead of
// following one another.
func (s *Sim) Prefetch(pks []capture.Packet) {
	pf := s.pf[:0]
	x := &s.ct.ix
	// First the addresses, then the reads in a loop of their own, so
	// that many reads are in flight at once.
	for i := range pks {
		pk := &pks[i]
		if !pk.Src.IsValid() || !pk.Dst.IsValid() {
			continue
		}
		if x.slots != nil {
			t := tuple{src: pk.Src.Unmap(), dst: pk.Dst.Unmap(), sport: pk.SPort, dport: pk.DPort, proto: pk.Proto}
			if t.proto != lang.TCP && t.proto != lang.UDP {
				t.sport, t.dport = 0, 0
			}
			pf = append(pf, &x.slots[int(x.hash(&t))&(len(x.slots)-1)])
		}
	}
	// The sweep looks at sweepPerInsert entries per new flow: read the
	// next entries along with the rest, then the slots of the expired
	// ones among them. Entries read for an earlier batch and not swept
	// yet (lead of them, from the sweep's cursor on) are not read again.
	ahead := s.pfc[:0]
	if used := s.ct.used; x.n > 0 && used > 0 {
		want := min(len(pks)*sweepPerInsert, used)
		lead := (s.pfEnd - s.ct.cursor + used) % used
		if s.pfEnd >= used || lead > want {
			lead = 0 // the storage grew, or the sweep went past: start again
		}
		i := (s.ct.cursor + lead) % used
		for k := lead; k < want; k++ {
			ahead = append(ahead, s.ct.at(i))
			if i++; i >= used {
				i = 0
			}
		}
		s.pfEnd = i
	}
	var sum uint64
	for _, a := range pf {
		sum += *a
	}
	for _, c := range ahead {
		sum += uint64(c.expires)
	}
	pf = pf[:0]
	j := jiffies(s.now)
	for _, c := range ahead {
		if c.confirmed && !c.replied && j >= c.expires {
			pf = append(pf, &x.slots[int(c.h)&(len(x.slots)-1)])
		}
	}
	for _, a := range pf {
		sum += *a
	}
	s.pfc = ahead
	s.sink += sum
	s.pf = pf
}

// Backend returns the name of the backend whose ruleset s runs.
func (s *Sim) Backend() string { return s.backend }

// Reset forgets all state: flows, set elements, recent lists, buckets.
// The simulation starts again at time 0.
func (s *Sim) Reset() {
	s.ct.reset()
	if e, ok := s.eng.(*nftEngine); ok && len(e.tokens) > 0 {
		h := s.opts.Horizon
		if h <= 0 {
			h = DefaultHorizon
		}
		e.loadTokens(s.clock, h, s.keys)
	}
	s.eng.reset()
	s.now = 0
}

// SetClock sets the wall-clock time of the simulation's time 0 and
// starts it afresh (Reset), so that the token sets of secret knocks hold
// the tokens of that time; call it before the first packet.
func (s *Sim) SetClock(t time.Time) {
	s.clock = t
	s.Reset()
}

// isLocal reports whether addr is one of the firewall's addresses, for a
// packet whose destination DNAT did (dnat) or did not change.
func (s *Sim) isLocal(addr netip.Addr, dnat bool) bool {
	if len(s.hosts) == 0 {
		return !dnat
	}
	return s.hosts[addr]
}

// Eval runs one packet through the firewall and returns the verdict. The
// packet's Time must not go backwards (a packet that does is taken as
// arriving at the latest time seen). The Events of the Result are valid
// until the next call.
func (s *Sim) Eval(pk *capture.Packet) Result {
	s.eval(pk)
	return s.finish()
}

// Decide is Eval for a caller that needs only the verdict, the deciding
// statement's ID (Result.Rule.ID) and whether the packet was sent by the
// firewall (Result.Hook is HookOutput): it returns no Result to copy.
func (s *Sim) Decide(pk *capture.Packet) (v lang.Verdict, stmt int, output bool) {
	s.eval(pk)
	return s.res.Verdict, s.res.Rule.ID, s.res.Hook == HookOutput
}

// eval runs Eval and leaves the result in s.res.
func (s *Sim) eval(pk *capture.Packet) {
	s.res = Result{}
	s.events = s.events[:0]
	if pk.Time > s.now {
		s.now = pk.Time
	}
	if pk.Skipped != "" || !pk.Src.IsValid() || !pk.Dst.IsValid() || pk.Src.Unmap().Is4() != pk.Dst.Unmap().Is4() {
		// Nothing to evaluate: the caller should not have sent it.
		s.res.Hook = HookOutput
		s.res.Comment = "not evaluated: not an IP packet the simulator can read"
		return
	}
	p := &s.p
	p.reset(pk, s.now)
	s.eng.gc(s, s.now)
	s.ct.track(s, p)
	s.res.State = p.stateName()

	fromHost := p.dir == dirOrig && len(s.hosts) > 0 && s.hosts[p.src]
	if fromHost && p.c != nil && p.fresh {
		p.c.fromLocal = true
	}
	if fromHost || (p.dir == dirReply && p.c.local) {
		// Sent by the firewall: the output path, which kwl leaves alone.
		s.res.Hook = HookOutput
		s.res.Verdict = lang.Accept
		s.res.Comment = "sent by the firewall"
		s.ct.confirm(s, p)
		return
	}
	v, stopped := s.eng.prerouting(s, p)
	if !stopped {
		h := HookInput
		if p.dir == dirReply {
			if !p.c.fromLocal {
				h = HookForward
			}
		} else if !s.isLocal(p.dst, p.dnat) {
			h = HookForward
		}
		if p.fresh {
			p.c.local = h == HookInput
		}
		s.res.Hook = h
		v = s.eng.filter(s, p, h)
	}
	s.res.Verdict = v
	if v == lang.Accept {
		s.ct.confirm(s, p)
	} else {
		s.ct.discard(s, p)
	}
}

func (s *Sim) finish() Result {
	if s.opts.Explain {
		s.res.Events = s.events
	}
	return s.res
}

// decide records a final verdict that no statement gave.
func (s *Sim) decide(comment string) {
	s.res.Rule = lang.Ref{}
	s.res.Comment = comment
}

// decideRule records the rule that gave a final verdict.
func (s *Sim) decideRule(origin lang.Ref, comment string) {
	s.res.Rule = origin
	s.res.Comment = comment
}

// note appends an event when explanations are on. Callers test
// s.opts.Explain first so that the arguments are not boxed otherwise.
func (s *Sim) note(format string, args ...any) {
	s.events = append(s.events, fmt.Sprintf(format, args...))
}
