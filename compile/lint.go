package compile

import "kwl.dev/kwl/lang"

// Lint returns the warnings of a checked policy for the backends named
// (Names, or some of them): those every backend shares (Check, computed
// once, when any backend is named) and those of lowering p for each
// backend, a warning two backends give alike once, less those a
// kwl:ignore comment silences. The shared ones come first, then each
// backend's in the order of backends; a name Lookup does not know adds
// nothing.
func Lint(p *lang.Policy, backends []string) lang.Diagnostics {
	type key struct {
		pos  lang.Pos
		code lang.Code
		msg  string
	}
	seen := map[key]bool{}
	var out lang.Diagnostics
	if len(backends) > 0 {
		out = Check(p)
	}
	for _, b := range backends {
		var diags lang.Diagnostics
		if be, ok := Lookup(b); ok {
			_, diags = be.Lower(p)
		}
		for _, d := range diags {
			k := key{d.Pos, d.Code, d.Message}
			if !seen[k] {
				seen[k] = true
				out = append(out, d)
			}
		}
	}
	return p.Filter(out)
}
