package compile_test

import (
	"strings"
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
)

// TestLint: the shared warnings once, each backend's own, and none that a
// kwl:ignore comment silences.
func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      string
		backends []string
		want     []string // "CODE message-prefix", in order
	}{
		{"no backend", "limit ssh 3/60s per source\n", nil, nil},
		{"nft", "limit ssh 3/60s per source\n", []string{"nft"},
			[]string{"L09 ", "L07 each set holds"}},
		{"iptables", "limit ssh 3/60s per source\n", []string{"iptables"},
			[]string{"L09 ", "L07 xt_recent keeps"}},
		{"both", "limit ssh 3/60s per source\n", compile.Names(),
			[]string{"L09 ", "L07 each set holds", "L07 xt_recent keeps"}},
		{"ignored", "limit ssh 3/60s per source # kwl:ignore L07\n", compile.Names(),
			[]string{"L09 "}},
		{"ascending", "knock 7000, 8000, 9000 opens ssh for 30s\n", []string{"nft"},
			[]string{"L05 knock ports 7000, 8000, 9000 are in ascending order"}},
		{"ascending but of two protocols", "knock 7000, udp/8000, 9000 opens ssh for 30s\n", []string{"nft"}, nil},
		{"ascending but strict", "knock 7000, 8000, 9000 strict opens ssh for 30s\n", []string{"nft"}, nil},
		{"adjacent and strict", "knock 7002, 7001, 7000 strict opens ssh for 30s\n", []string{"nft"},
			[]string{"L05 knock ports 7002, 7001, 7000 are in descending order"}},
		{"ascending and exclusive", "knock 7000, 8000 exclusive opens ssh for 30s\n", []string{"nft"},
			[]string{"L05 knock ports 7000, 8000 are in ascending order"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, diags := lang.Load("p.kwl", []byte(tc.src))
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := compile.Lint(p, tc.backends)
			if len(got) != len(tc.want) {
				t.Fatalf("Lint: %v, want %d warnings %q", got, len(tc.want), tc.want)
			}
			for i, d := range got {
				code, msg, _ := strings.Cut(tc.want[i], " ")
				if string(d.Code) != code || !strings.HasPrefix(d.Message, msg) || d.Severity != wantSev(code) {
					t.Errorf("warning %d: %v, want %s %q...", i, d, code, msg)
				}
			}
		})
	}
}

// wantSev is the severity of a lint code's diagnostics: a capacity of
// the backend (L07) is a note, since it holds for every policy.
func wantSev(code string) lang.Severity {
	if lang.Code(code) == lang.LintCapacity {
		return lang.Note
	}
	return lang.Warning
}
