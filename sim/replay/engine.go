package replay

import (
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// sentByHost is the skip reason of a packet the firewall sent; without
// --host, of a reply of a flow the firewall is taken to terminate.
const (
	sentByHost = "sent by the host"
	replyOf    = "a reply, taken as sent by the host (name its addresses with --host)"
)

// simEngine adapts package sim to an Engine.
type simEngine struct {
	s       *sim.Sim
	explain bool
	output  string // the skip reason of a packet the firewall sent
	fixed   bool   // the clock was given: SetClock leaves it
}

func (e *simEngine) Eval(p *capture.Packet) Result {
	if !e.explain {
		v, stmt, output := e.s.Decide(p)
		if output {
			return Result{Verdict: v, Skip: e.output}
		}
		return Result{Verdict: v, Stmt: stmt}
	}
	r := e.s.Eval(p)
	if r.Hook == sim.HookOutput {
		// Sent by the firewall: conntrack learned from it, no rule ran.
		return Result{Verdict: r.Verdict, Skip: e.output}
	}
	out := Result{Verdict: r.Verdict, Stmt: r.Rule.ID}
	out.Explain = r.State + " " + r.Hook.String()
	if r.Comment != "" {
		out.Explain += ", " + r.Comment
	}
	if x := r.Explain(); x != "" {
		out.Explain += "; " + x
	}
	return out
}

// Prefetch reads the state the packets will need (see sim.Sim.Prefetch).
func (e *simEngine) Prefetch(ps []capture.Packet) { e.s.Prefetch(ps) }

// Split divides the packets between two simulators (see sim.Split).
func (e *simEngine) Split() (func(*capture.Packet) bool, bool) {
	sp, ok := e.s.Split()
	if !ok {
		return nil, false
	}
	return sp.Inert, true
}

// NewEngine builds the simulator of a backend of the registry
// (compile.Lookup) for pol: packets sent by opts.Hosts are taken in
// without being evaluated, and with opts.Explain each result says what
// state the packet read and wrote. The simulation's clock is the
// capture's start (SetClock), unless opts.Clock is set. The engine is
// nil when the backend's diagnostics have errors.
func NewEngine(backend string, pol *lang.Policy, opts sim.Options) (Engine, lang.Diagnostics) {
	s, diags := sim.New(backend, pol, opts)
	if s == nil {
		return nil, diags
	}
	output := sentByHost
	if len(opts.Hosts) == 0 {
		output = replyOf
	}
	return &simEngine{s: s, explain: opts.Explain, output: output, fixed: !opts.Clock.IsZero()}, diags
}

// SetClock sets the wall-clock time of the simulation's start, when the
// engine was made without one (sim.Sim.SetClock).
func (e *simEngine) SetClock(t time.Time) {
	if !e.fixed {
		e.s.SetClock(t)
	}
}
