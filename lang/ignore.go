package lang

import (
	"fmt"
	"strings"
)

// A comment "# kwl:ignore L13" silences warnings and notes with those
// codes (several may be listed, separated by spaces or commas) for one
// statement: the statement it trails (on a line of several statements,
// the last of them), or, standing on its own line, the statement that
// follows it. Errors cannot be silenced.
const ignoreDirective = "kwl:ignore"

// collectIgnores reads the kwl:ignore comments of f. A directive that
// silences nothing as written (a space in "kwl: ignore", a code that is
// not a lint code) is a warning in ds.
func collectIgnores(f *File, ds *Diagnostics) []Ignore {
	var igs []Ignore
	ignoreCodes := func(c *Comment) []string { return directiveCodes(c, ds) }
	var pending []string // codes of own-line directives waiting for a statement
	last := -1           // index in igs of the previous statement's Ignore, or -1
	for _, it := range f.Items {
		switch {
		case it.Stmt == nil && it.Comment != nil:
			pending = append(pending, ignoreCodes(it.Comment)...)
		case it.Stmt != nil:
			pos := it.Stmt.Position()
			if last >= 0 {
				igs[last].To = pos
				last = -1
			}
			codes := pending
			pending = nil
			if it.Trailing != nil {
				codes = append(codes, ignoreCodes(it.Trailing)...)
			}
			if len(codes) == 0 {
				continue
			}
			ig := Ignore{From: pos, Codes: map[Code]bool{}}
			for _, c := range codes {
				ig.Codes[Code(c)] = true
			}
			igs = append(igs, ig)
			last = len(igs) - 1
		}
	}
	return igs
}

// directiveCodes returns the codes a comment's kwl:ignore directive
// names, and warns in ds of what the directive cannot silence.
func directiveCodes(c *Comment, ds *Diagnostics) []string {
	text := strings.TrimSpace(strings.TrimPrefix(c.Text, "#"))
	rest, ok := strings.CutPrefix(text, ignoreDirective)
	if !ok {
		// "kwl: ignore L09", "KWL:IGNORE L09", "kwl ignore L09".
		squeezed := strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(text, ":", ": ")), ""))
		if strings.HasPrefix(squeezed, "kwl:ignore") || strings.HasPrefix(squeezed, "kwlignore") {
			rest := text[strings.Index(strings.ToLower(text), "ignore")+len("ignore"):]
			ds.Add(c.Position(), Warning, LintIgnoreDirective, "this comment silences nothing: the directive is written kwl:ignore, in lower case and without spaces",
				"# kwl:ignore"+rest)
		}
		return nil
	}
	words := strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	var codes []string
	for _, w := range words {
		code := Code(w)
		switch {
		case code.Known() && code.IsLint():
			codes = append(codes, w)
		case Code(strings.ToUpper(w)).Known() && Code(strings.ToUpper(w)).IsLint():
			ds.Add(c.Position(), Warning, LintIgnoreDirective, fmt.Sprintf("kwl:ignore %s silences nothing: codes are written in capitals", w),
				"# kwl:ignore "+strings.ToUpper(w))
		case code.Known():
			ds.Add(c.Position(), Warning, LintIgnoreDirective, fmt.Sprintf("kwl:ignore %s silences nothing: errors cannot be silenced", w),
				"fix the error instead")
		default:
			ds.Add(c.Position(), Warning, LintIgnoreDirective, fmt.Sprintf("kwl:ignore %s silences nothing: there is no such lint code", w),
				"kwl help lints lists the codes")
		}
	}
	if len(words) == 0 {
		ds.Add(c.Position(), Warning, LintIgnoreDirective, "kwl:ignore names no code: it silences nothing", "# kwl:ignore L09")
	}
	return codes
}

// Filter returns l without the warnings and notes that a kwl:ignore
// comment of the policy silences. Errors are always kept.
func (p *Policy) Filter(l Diagnostics) Diagnostics {
	if p == nil || len(p.Ignores) == 0 {
		return l
	}
	out := l[:0:0]
	for _, d := range l {
		if d.Severity != Error && d.Pos.File == p.File && p.ignored(d) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// ignored reports whether a kwl:ignore comment silences d.
func (p *Policy) ignored(d Diagnostic) bool {
	for _, ig := range p.Ignores {
		if ig.Codes[d.Code] && ig.covers(d.Pos) {
			return true
		}
	}
	return false
}
