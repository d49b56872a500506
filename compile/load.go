package compile

import "kwl.dev/kwl/lang"

// Load reads a policy as lang.Load does and, when it has no errors,
// lowers it with lower, a backend's Lower (nft.Lower, iptables.Lower). It
// returns the policy (nil when the load has errors), the ruleset, and the
// diagnostics to report: the load's, then those of lowering (the shared
// Warnings and the backend's own, as With orders them) less those a
// kwl:ignore comment silences. The ruleset is not to be used when the
// diagnostics have errors.
func Load[R any](file string, src []byte, lower func(*lang.Policy) (R, lang.Diagnostics)) (*lang.Policy, R, lang.Diagnostics) {
	var rs R
	p, diags := lang.Load(file, src)
	if diags.HasErrors() {
		return nil, rs, diags
	}
	rs, own := lower(p)
	return p, rs, append(diags, p.Filter(With(p, own))...)
}
