package main

import (
	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
)

func init() {
	policyLints = append(policyLints, backendLints)
}

// backendLints returns the warnings every backend shares
// (compile.Check, computed once) and those of lowering pol for each
// backend, less those a kwl:ignore comment silences. A warning two
// backends give alike is reported once.
func backendLints(pol *lang.Policy, backends []string) lang.Diagnostics {
	type key struct {
		pos  lang.Pos
		code lang.Code
		msg  string
	}
	seen := map[key]bool{}
	var out lang.Diagnostics
	if len(backends) > 0 {
		out = compile.Check(pol)
	}
	for _, b := range backends {
		var diags lang.Diagnostics
		if be, ok := compile.Lookup(b); ok {
			_, diags = be.Lower(pol)
		}
		for _, d := range diags {
			k := key{d.Pos, d.Code, d.Message}
			if !seen[k] {
				seen[k] = true
				out = append(out, d)
			}
		}
	}
	return pol.Filter(out)
}
