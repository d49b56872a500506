// Package compile holds what the backends (compile/nft, compile/iptables)
// share for their callers: the registry of backends (Backends, Lookup),
// and the lints that hold whatever the backend.
//
// A backend's Lower returns only its own diagnostics, what that backend
// cannot express exactly; a caller that reports on a policy adds the
// shared ones (Check) once, however many backends it lowers for.
package compile

import (
	"fmt"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
)

// Warnings returns the warnings that hold on every backend, in the order
// of their positions: scan-completable knock sequences
// (lang.LintScanKnock), per-source IPv6 keys at /128 (lang.LintIPv6Key),
// and windows too short for TCP's retransmissions (lang.LintTiming).
func Warnings(p *lang.Policy) lang.Diagnostics {
	ds := plan.Warnings(p)
	ds.Sort()
	return ds
}

// Check returns what holds on every backend: the shared Warnings, and
// an error (lang.ErrOverride) at each test step's verdict for a backend
// that the registry does not have, in the order of their positions.
func Check(p *lang.Policy) lang.Diagnostics {
	ds := plan.Warnings(p)
	names := Names()
	for _, t := range p.Tests {
		for _, st := range t.Steps {
			for _, o := range st.ExpectOn {
				if _, ok := Lookup(o.Backend); !ok {
					hint := lang.DidYouMean(o.Backend, names)
					if hint == "" {
						hint = "the backends are " + NameList(" and ")
					}
					ds.Add(o.Pos, lang.Error, lang.ErrOverride, fmt.Sprintf("unknown backend %q", o.Backend), hint)
				}
			}
		}
	}
	ds.Sort()
	return ds
}

// With returns Check of p followed by a backend's own diagnostics, in
// the order of their positions; at one position, the shared ones come
// first.
func With(p *lang.Policy, own lang.Diagnostics) lang.Diagnostics {
	ds := append(Check(p), own...)
	ds.Sort()
	return ds
}

// ServiceID returns the id by which the sets, lists and chains of a
// service named name are named (door_ID_4, ban_ID_6, ...): its name with
// what a backend does not accept in a name made '_'. Two services whose
// names give the same id have ID and ID2.
func ServiceID(name string) string { return plan.Sanitize(name) }
