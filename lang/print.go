package lang

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Print writes the diagnostics as compilers do:
//
//	policy.kwl:3:18: error: unknown service "shh" [E01]
//	    knock 1600 opens shh for 60s
//	                     ^
//	    hint: did you mean 'ssh'?
//
// srcs maps file names to their text, for the source line; a file missing
// from it gets no source line.
func (l Diagnostics) Print(w io.Writer, srcs map[string][]byte) error {
	var b strings.Builder
	lines := map[string][]int{} // per file, the offset of each line's start
	for _, d := range l {
		b.WriteString(d.String())
		b.WriteByte('\n')
		src := srcs[d.Pos.File]
		starts, ok := lines[d.Pos.File]
		if !ok && src != nil {
			starts = lineStarts(src)
			lines[d.Pos.File] = starts
		}
		if line, ok := sourceLine(src, starts, d.Pos.Line); ok && d.Pos.IsValid() {
			shown, caret := caretLine(line, d.Pos.Col)
			b.WriteString("    " + shown + "\n")
			b.WriteString("    " + caret + "^\n")
		}
		if d.Hint != "" {
			b.WriteString("    hint: " + d.Hint + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// lineStarts returns the offset in src at which each line begins.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// sourceLine returns line n (1-based) of src, without its newline, given
// the line starts of src.
func sourceLine(src []byte, starts []int, n int) ([]byte, bool) {
	if src == nil || n < 1 || n > len(starts) {
		return nil, false
	}
	src = src[starts[n-1]:]
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return bytes.TrimRight(src, "\r"), true
}

// maxShown caps how much of a long line is shown around the column.
const maxShown = 120

// caretLine returns the line as shown and the spacing that puts a caret
// under byte column col. Tabs are kept so the caret lines up whatever the
// terminal's tab width; control bytes and bad UTF-8 are shown as '?'.
func caretLine(line []byte, col int) (shown, pad string) {
	col = max(1, min(col, len(line)+1))
	start := 0
	if col > maxShown {
		// Keep the caret in view on a very long line.
		start = col - maxShown/2
		for start < len(line) && !utf8.RuneStart(line[start]) {
			start++
		}
	}
	end := min(len(line), start+maxShown)
	var s, p strings.Builder
	if start > 0 {
		s.WriteString("...")
		p.WriteString("   ")
	}
	for i := start; i < end; {
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size <= 1 || r < ' ' && r != '\t' || r == 0x7f {
			r, size = '?', max(size, 1)
		}
		s.WriteRune(r)
		if i < col-1 {
			if r == '\t' {
				p.WriteByte('\t')
			} else {
				p.WriteByte(' ')
			}
		}
		i += size
	}
	if end < len(line) {
		s.WriteString("...")
	}
	return s.String(), p.String()
}

// jsonDiag is the JSON form of a diagnostic.
type jsonDiag struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Hint     string `json:"hint"`
}

// MarshalJSON writes the list as an array of objects with the fields
// file, line, col, severity, code, message and hint ("" when none). An
// empty list is "[]".
func (l Diagnostics) MarshalJSON() ([]byte, error) {
	out := make([]jsonDiag, 0, len(l))
	for _, d := range l {
		out = append(out, jsonDiag{File: d.Pos.File, Line: d.Pos.Line, Col: d.Pos.Col,
			Severity: d.Severity.String(), Code: string(d.Code), Message: d.Message, Hint: d.Hint})
	}
	return json.Marshal(out)
}

// PrintJSON writes the list as one indented JSON array and a newline.
func (l Diagnostics) PrintJSON(w io.Writer) error {
	b, err := l.MarshalJSON()
	if err != nil {
		return err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		return err
	}
	ind.WriteByte('\n')
	_, err = w.Write(ind.Bytes())
	if err != nil {
		return fmt.Errorf("write diagnostics: %w", err)
	}
	return nil
}
