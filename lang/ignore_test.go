package lang

import (
	"reflect"
	"testing"
)

func TestIgnoreCodes(t *testing.T) {
	tests := []struct {
		name, comment string
		want          []string
	}{
		{"one", "# kwl:ignore L13", []string{"L13"}},
		{"several", "#kwl:ignore L13, L07 L09", []string{"L13", "L07", "L09"}},
		{"other comment", "# knock first", nil},
		{"not at the start", "# see kwl:ignore L13", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ignoreCodes(tc.comment); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ignoreCodes(%q) = %q, want %q", tc.comment, got, tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	src := "# kwl:ignore L04\nknock 22 opens http for 60s\nlimit ssh 3/60s # kwl:ignore L99\n"
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
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L99"},
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L13"},
		{Pos: Pos{File: "p.kwl", Line: 3, Col: 1}, Severity: Error, Code: "L99"},
		{Pos: Pos{File: "q.kwl", Line: 3, Col: 1}, Severity: Warning, Code: "L99"},
	}
	got := pol.Filter(in)
	if len(got) != 3 || got[0].Code != "L13" || got[1].Severity != Error || got[2].Pos.File != "q.kwl" {
		t.Errorf("Filter kept %v", got)
	}
}
