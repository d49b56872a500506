package main

import (
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

func init() {
	policyLints = append(policyLints, backendLints)
}

// backendLints lowers pol for each backend and returns the backends'
// warnings, less those a kwl:ignore comment silences. A warning both
// backends give (the checks they share) is reported once.
func backendLints(pol *lang.Policy, backends []string) lang.Diagnostics {
	type key struct {
		pos  lang.Pos
		code lang.Code
		msg  string
	}
	seen := map[key]bool{}
	var out lang.Diagnostics
	for _, b := range backends {
		var diags lang.Diagnostics
		switch b {
		case "nft":
			_, diags = nft.Lower(pol)
		case "iptables":
			_, diags = iptables.Lower(pol)
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
