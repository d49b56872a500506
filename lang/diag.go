package lang

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a position in a policy file. Lines and columns count from 1;
// the zero Pos is "no position".
type Pos struct {
	File string // file name as given on the command line
	Line int    // 1-based line
	Col  int    // 1-based column, in bytes
}

// IsValid reports whether p names a place in a file.
func (p Pos) IsValid() bool { return p.Line > 0 }

// String returns "file:line:col", or "" for the zero Pos.
func (p Pos) String() string {
	if !p.IsValid() {
		return p.File
	}
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Severity orders diagnostics by how much they matter.
type Severity int

// The severities, least to most severe.
const (
	Note Severity = iota // a fact of the backend that holds for every policy (set sizes)
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Note:
		return "note"
	case Warning:
		return "warning"
	}
	return "error"
}

// A Diagnostic is one finding about a policy: a syntax or type error,
// a lint warning, or a note. Code is a stable identifier ("E01", "L07")
// that users can look up; it may be empty for syntax errors.
type Diagnostic struct {
	Pos      Pos
	Severity Severity
	Code     Code
	Message  string
	Hint     string // a suggestion ("did you mean 'ssh'?"), or ""
}

func (d Diagnostic) String() string {
	s := fmt.Sprintf("%s: %s: %s", d.Pos, d.Severity, d.Message)
	if d.Code != "" {
		s += " [" + string(d.Code) + "]"
	}
	return s
}

// Diagnostics is a list of findings, in the spirit of go/scanner.ErrorList.
type Diagnostics []Diagnostic

// Add appends a diagnostic.
func (l *Diagnostics) Add(pos Pos, sev Severity, code Code, msg, hint string) {
	*l = append(*l, Diagnostic{Pos: pos, Severity: sev, Code: code, Message: msg, Hint: hint})
}

// Errorf appends an error.
func (l *Diagnostics) Errorf(pos Pos, format string, args ...any) {
	l.Add(pos, Error, "", fmt.Sprintf(format, args...), "")
}

// Sort orders the list by file, line and column, keeping the order of
// diagnostics at the same position.
func (l Diagnostics) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].Pos, l[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// HasErrors reports whether any diagnostic is an error.
func (l Diagnostics) HasErrors() bool {
	for _, d := range l {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Err returns the list as an error when it holds an error, else nil.
func (l Diagnostics) Err() error {
	if l.HasErrors() {
		return l
	}
	return nil
}

// Error implements the error interface: one diagnostic per line.
func (l Diagnostics) Error() string {
	var b strings.Builder
	for i, d := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}
