package lang

import "strings"

// A comment "# kwl:ignore L13" silences warnings and notes with those
// codes (several may be listed, separated by spaces or commas) for one
// statement: the statement it trails (on a line of several statements,
// the last of them), or, standing on its own line, the statement that
// follows it. Errors cannot be silenced.
const ignoreDirective = "kwl:ignore"

// collectIgnores reads the kwl:ignore comments of f.
func collectIgnores(f *File) []Ignore {
	var igs []Ignore
	var pending []string // codes of own-line directives waiting for a statement
	last := -1           // index in igs of the previous statement's Ignore, or -1
	for _, it := range f.Items {
		switch {
		case it.Stmt == nil && it.Comment != nil:
			pending = append(pending, ignoreCodes(it.Comment.Text)...)
		case it.Stmt != nil:
			pos := it.Stmt.Position()
			if last >= 0 {
				igs[last].To = pos
				last = -1
			}
			codes := pending
			pending = nil
			if it.Trailing != nil {
				codes = append(codes, ignoreCodes(it.Trailing.Text)...)
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

// ignoreCodes returns the codes a comment's kwl:ignore directive names.
func ignoreCodes(comment string) []string {
	text := strings.TrimSpace(strings.TrimPrefix(comment, "#"))
	rest, ok := strings.CutPrefix(text, ignoreDirective)
	if !ok {
		return nil
	}
	return strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
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
