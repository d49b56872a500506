package lang

import (
	"reflect"
	"strings"
	"testing"
)

func TestIgnoreCodes(t *testing.T) {
	tests := []struct {
		name, comment string
		want          []string
		warn          string // the L27 warning's message, or ""
	}{
		{"one", "# kwl:ignore L13", []string{"L13"}, ""},
		{"several", "#kwl:ignore L13, L07 L09", []string{"L13", "L07", "L09"}, ""},
		{"other comment", "# knock first", nil, ""},
		{"not at the start", "# see kwl:ignore L13", nil, ""},
		{"a space", "# kwl: ignore L13", nil, "the directive is written kwl:ignore"},
		{"capitals", "# KWL:IGNORE L13", nil, "the directive is written kwl:ignore"},
		{"lower case code", "# kwl:ignore l13", nil, "codes are written in capitals"},
		{"unknown code", "# kwl:ignore L99 L13", []string{"L13"}, "no such lint code"},
		{"an error's code", "# kwl:ignore E01", nil, "errors cannot be silenced"},
		{"no code", "# kwl:ignore", nil, "names no code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ds Diagnostics
			got := directiveCodes(&Comment{Text: tc.comment}, &ds)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("directiveCodes(%q) = %q, want %q", tc.comment, got, tc.want)
			}
			switch {
			case tc.warn == "" && len(ds) > 0:
				t.Errorf("directiveCodes(%q): unexpected %v", tc.comment, ds)
			case tc.warn != "" && (len(ds) != 1 || ds[0].Code != LintIgnoreDirective || !strings.Contains(ds[0].Message, tc.warn)):
				t.Errorf("directiveCodes(%q): %v, want one L27 saying %q", tc.comment, ds, tc.warn)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	src := "# kwl:ignore L04\nknock 22 opens http for 60s\nlimit ssh 3/60s # kwl:ignore L26\n"
	pol, diags := Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, d := range diags {
		if d.Code == "L04" {
			t.Errorf("L04 not silenced: %v", d)
		}
	}
	in := Diagnostics{
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L26"},
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L13"},
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Error, Code: "L26"},
		{Pos: Pos{File: "q.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L26"},
	}
	got := pol.Filter(in)
	if len(got) != 3 || got[0].Code != "L13" || got[1].Severity != Error || got[2].Pos.File != "q.kwl" {
		t.Errorf("Filter kept %v", got)
	}
}

// TestIgnorePerStatement checks that a kwl:ignore comment silences one
// statement: on a line of several, the one it trails; on its own line,
// the one below it; not the others on the same line.
func TestIgnorePerStatement(t *testing.T) {
	const a, b = "knock 443 opens ssh for 60s", "knock 80 opens ssh for 60s"
	for _, tc := range []struct {
		name, src string
		want      []int // the columns on line 2 of the L20s kept
	}{
		{"none", "\n" + a + "; " + b + "\n", []int{7, 36}},
		{"trailing", "\n" + a + "; " + b + " # kwl:ignore L20\n", []int{7}},
		{"own line", "# kwl:ignore L20\n" + a + "; " + b + "\n", []int{36}},
		{"both", "# kwl:ignore L20\n" + a + "; " + b + " # kwl:ignore L20\n", nil},
		{"other code", "\n" + a + "; " + b + " # kwl:ignore L21\n", []int{7, 36}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Load("p.kwl", []byte(tc.src))
			var got []int
			for _, d := range diags {
				if d.Code == LintWellKnownKnock {
					if d.Pos.Line != 2 {
						t.Fatalf("L20 on line %d: %v", d.Pos.Line, d)
					}
					got = append(got, d.Pos.Col)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("L20 kept at columns %v, want %v\n%v", got, tc.want, diags)
			}
		})
	}
}
