package lang

import (
	"strings"
)

// Format prints a file in the canonical layout: one statement per line,
// words separated by one space, ";"-joined statements on lines of their
// own, runs of blank lines reduced to one, test steps indented by four
// spaces, comments kept where they were (trailing comments of
// consecutive lines aligned, as gofmt does), durations in their
// canonical form (canonicalDuration: 2.5m is 2m30s, 0.4s is 400ms, 90s
// stays 90s; the value never changes). It prints from the AST, so
// a file with syntax errors loses the statements that did not parse:
// callers format only files that parsed cleanly.
func Format(f *File) []byte {
	var b strings.Builder
	formatItems(&b, f.Items, "")
	return []byte(b.String())
}

// formatItems prints items with the given indent. Trailing comments of a
// run of consecutive commented lines start in one column.
func formatItems(b *strings.Builder, items []*Item, indent string) {
	lines := make([]string, len(items))
	for i, it := range items {
		switch {
		case it.Stmt != nil:
			if _, ok := it.Stmt.(*TestStmt); !ok {
				lines[i] = indent + stmtText(it.Stmt)
			}
		case it.Step != nil:
			lines[i] = indent + stepText(it.Step)
		}
	}
	// Alignment runs: consecutive non-test statements with trailing
	// comments and no blank line between them.
	width := make([]int, len(items))
	for i := 0; i < len(items); {
		if !aligns(items[i]) {
			i++
			continue
		}
		j, w := i, 0
		for j < len(items) && aligns(items[j]) && (j == i || !items[j].Blank) {
			w = max(w, len(lines[j]))
			j++
		}
		for k := i; k < j; k++ {
			width[k] = w
		}
		i = j
	}
	for i, it := range items {
		if it.Blank && i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case it.Comment != nil:
			b.WriteString(indent + it.Comment.Text + "\n")
			continue
		case it.Stmt != nil:
			if ts, ok := it.Stmt.(*TestStmt); ok {
				formatTest(b, ts, it.Trailing, indent)
				continue
			}
		}
		b.WriteString(lines[i])
		if it.Trailing != nil {
			b.WriteString(strings.Repeat(" ", width[i]-len(lines[i])+1))
			b.WriteString(it.Trailing.Text)
		}
		b.WriteByte('\n')
	}
}

func aligns(it *Item) bool {
	if it.Trailing == nil {
		return false
	}
	_, isTest := it.Stmt.(*TestStmt)
	return !isTest && (it.Stmt != nil || it.Step != nil)
}

func formatTest(b *strings.Builder, ts *TestStmt, trailing *Comment, indent string) {
	b.WriteString(indent + "test " + ts.Name)
	if ts.At != nil {
		b.WriteString(" at " + ts.At.Text)
	}
	b.WriteString(" {")
	if ts.Comment != nil {
		b.WriteString(" " + ts.Comment.Text)
	}
	b.WriteByte('\n')
	formatItems(b, ts.Items, indent+"    ")
	b.WriteString(indent + "}")
	if trailing != nil {
		b.WriteString(" " + trailing.Text)
	}
	b.WriteByte('\n')
}

// words joins the non-empty parts with single spaces.
type words []string

func (w *words) add(s ...string) {
	for _, x := range s {
		if x != "" {
			*w = append(*w, x)
		}
	}
}

func (w words) String() string { return strings.Join(w, " ") }

func portText(p *PortSpec) string {
	if p.Proto != "" {
		return p.Proto + "/" + p.Num
	}
	return p.Num
}

func portsText(ps []*PortSpec) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = portText(p)
	}
	return strings.Join(s, ", ")
}

func sourceText(s *Source) string {
	if s.Bits != "" {
		return s.Addr + "/" + s.Bits
	}
	return s.Addr
}

func sourcesText(ss []*Source) string {
	s := make([]string, len(ss))
	for i, x := range ss {
		s[i] = sourceText(x)
	}
	return strings.Join(s, ", ")
}

func (w *words) from(ss []*Source) {
	if len(ss) > 0 {
		w.add("from", sourcesText(ss))
	}
}

func (w *words) options(o Options) {
	if o.Family != nil {
		w.add("family", o.Family.Text)
	}
	if o.Reject != nil {
		w.add("reject")
	}
	if l := o.Log; l != nil {
		w.add("log", l.Level.Text)
		if l.Prefix != nil {
			w.add("prefix", l.Prefix.Text)
		}
		if l.Count != nil {
			w.add("rate", l.Count.Text+"/"+canonicalDuration(l.Per.Text))
		}
	}
}

// stmtText prints one statement (not a test block) on one line.
func stmtText(s Stmt) string {
	var w words
	switch s := s.(type) {
	case *ServiceStmt:
		w.add("service", s.Name, "=", portsText(s.Ports))
		if s.Forward != nil {
			w.add("forward", "to", sourceText(s.Forward))
		}
	case *KnockStmt:
		w.add("knock", portsText(s.Ports))
		w.from(s.From)
		if s.Secret != nil {
			w.add("secret", s.Secret.Text)
		}
		if s.Within != nil {
			w.add("within", canonicalDuration(s.Within.Text))
		}
		if s.In != nil {
			w.add("in", canonicalDuration(s.In.Text))
		}
		if s.Reset != nil {
			w.add(s.Reset.Text)
		}
		svcs := s.Service.Text
		for _, a := range s.Also {
			svcs += ", " + a.Text
		}
		w.add(s.Action, svcs)
		if s.Once != nil {
			w.add("once")
		}
		if s.For != nil {
			w.add("for", canonicalDuration(s.For.Text))
		}
		if s.PerSource {
			w.add("per", perSource(s.Mask4, s.Mask6))
		}
		if s.Ignore != nil {
			w.add("ignore", canonicalDuration(s.Ignore.Text))
		}
		if s.Pass != nil {
			w.add("pass")
		}
		w.options(s.Options)
	case *CloseStmt:
		w.add("close", s.Service.Text, "on", portsText(s.Ports))
		w.from(s.From)
		w.options(s.Options)
	case *LimitStmt:
		if s.Concurrent != nil {
			w.add("limit", s.Service.Text, s.Count.Text, "concurrent")
		} else {
			w.add("limit", s.Service.Text, s.Count.Text+"/"+canonicalDuration(s.Window.Text))
		}
		if s.Burst != nil {
			w.add("burst", s.Burst.Text)
		}
		if s.PerSource {
			w.add("per", perSource(s.Mask4, s.Mask6))
		}
		if s.Shared {
			w.add("shared")
		}
		if s.Ban != nil {
			w.add("ban", canonicalDuration(s.Ban.Text))
			if s.BanAll != nil {
				w.add("all")
			}
		}
		w.options(s.Options)
	case *AllowStmt:
		w.add("allow", s.Service.Text)
		w.from(s.From)
		w.options(s.Options)
	}
	return w.String()
}

// perSource writes the key of "per source[/N[/M]]".
func perSource(mask4, mask6 *Word) string {
	src := "source"
	if mask4 != nil {
		src += "/" + mask4.Text
		if mask6 != nil {
			src += "/" + mask6.Text
		}
	}
	return src
}

func stepText(s *TestStep) string {
	var w words
	w.add("at", canonicalDuration(s.At.Text), "from", sourceText(s.From))
	if s.SPort != nil {
		w.add("port", s.SPort.Text)
	}
	if s.To != nil {
		w.add("to", sourceText(s.To))
	}
	w.add(portText(s.Port))
	if s.Data {
		w.add("data")
	}
	if s.Token != nil {
		w.add("token", s.TokenKind.String())
	}
	if s.Flags != nil {
		w.add("flags", s.Flags.Text)
	}
	w.add("expect", s.Expect)
	for _, o := range s.Override {
		w.add(o.Backend, o.Verdict)
	}
	return w.String()
}
