package lang

import "strings"

// A comment "# kwl:ignore L13" silences warnings and notes with those
// codes (several may be listed, separated by spaces or commas) for one
// statement: the statement it trails, or, standing on its own line, the
// statement that follows it. Errors cannot be silenced.
const ignoreDirective = "kwl:ignore"

// collectIgnores reads the kwl:ignore comments of f.
func collectIgnores(f *File) map[int]map[string]bool {
	var ig map[int]map[string]bool
	var pending []string // codes of own-line directives waiting for a statement
	for _, it := range f.Items {
		switch {
		case it.Stmt == nil && it.Comment != nil:
			pending = append(pending, ignoreCodes(it.Comment.Text)...)
		case it.Stmt != nil:
			codes := pending
			pending = nil
			if it.Trailing != nil {
				codes = append(codes, ignoreCodes(it.Trailing.Text)...)
			}
			if len(codes) == 0 {
				continue
			}
			line := it.Stmt.Position().Line
			if ig == nil {
				ig = map[int]map[string]bool{}
			}
			if ig[line] == nil {
				ig[line] = map[string]bool{}
			}
			for _, c := range codes {
				ig[line][c] = true
			}
		}
	}
	return ig
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
		if d.Severity != Error && d.Pos.File == p.File && p.Ignores[d.Pos.Line][string(d.Code)] {
			continue
		}
		out = append(out, d)
	}
	return out
}
