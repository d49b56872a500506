package compile_test

import (
	"slices"
	"strings"
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

func TestRegistry(t *testing.T) {
	if got, want := compile.Names(), []string{"nft", "iptables"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if got := compile.NameList("|"); got != "nft|iptables" {
		t.Errorf(`NameList("|") = %q`, got)
	}
	for i, b := range compile.Backends() {
		got, ok := compile.Lookup(b.Name())
		if !ok || got != b {
			t.Errorf("Lookup(%q) = %v, %v; want backend %d", b.Name(), got, ok, i)
		}
	}
	for _, name := range []string{"", "pf", "NFT", "iptables "} {
		if b, ok := compile.Lookup(name); ok {
			t.Errorf("Lookup(%q) = %v, true; want no backend", name, b)
		}
	}
	if err := compile.UnknownError("pf"); err.Error() != `unknown backend "pf" (nft or iptables)` {
		t.Errorf("UnknownError: %v", err)
	}
	bs := compile.Backends()
	bs[0] = nil
	if compile.Backends()[0] == nil {
		t.Error("Backends returns the registry itself, not a copy")
	}
}

// TestBackendRender checks that each backend renders what its Lower
// returns as kwl compile prints it, and refuses another backend's ruleset.
func TestBackendRender(t *testing.T) {
	pol, diags := lang.Load("t.kwl", []byte("knock 1600 opens ssh for 60s\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	nrs, _ := nft.Lower(pol)
	irs, _ := iptables.Lower(pol)
	want4, want6, _ := irs.RenderReload()
	wantNft, _ := nrs.Render()
	want := map[string]string{"nft": wantNft, "iptables": want4 + "\n" + want6}
	for _, b := range compile.Backends() {
		rs, _ := b.Lower(pol)
		got, err := b.Render(rs)
		if err != nil || got != want[b.Name()] {
			t.Errorf("%s: Render = %q, %v; want %q", b.Name(), got, err, want[b.Name()])
		}
		for _, other := range compile.Backends() {
			if other == b {
				continue
			}
			if _, err := other.Render(rs); err == nil || !strings.Contains(err.Error(), "cannot render") {
				t.Errorf("%s rendered a ruleset of %s: %v", other.Name(), b.Name(), err)
			}
		}
	}
}

// TestCheckBackendNames checks that a test step's verdict for a backend
// the registry does not have is an error at the name, with a hint.
func TestCheckBackendNames(t *testing.T) {
	for _, tc := range []struct {
		name, step string
		col        int // of the error; 0 for none
		msg, hint  string
	}{
		{"known", "expect drop iptables accept nft drop", 0, "", ""},
		{"typo", "expect drop iptabels accept", 43, `unknown backend "iptabels"`, "did you mean 'iptables'?"},
		{"unknown", "expect drop pf accept", 43, `unknown backend "pf"`, "the backends are nft and iptables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "allow ssh\ntest \"t\" {\n  at 0s from 192.0.2.1 tcp/22 " + tc.step + "\n}\n"
			pol, diags := lang.Load("t.kwl", []byte(src))
			if diags.HasErrors() {
				t.Fatalf("lang: %v", diags)
			}
			var errs lang.Diagnostics
			for _, d := range compile.Check(pol) {
				if d.Severity == lang.Error {
					errs = append(errs, d)
				}
			}
			if tc.col == 0 {
				if len(errs) > 0 {
					t.Errorf("errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("errors: %v; want one", errs)
			}
			d := errs[0]
			if d.Code != lang.ErrOverride || d.Pos.Line != 3 || d.Pos.Col != tc.col || d.Message != tc.msg || d.Hint != tc.hint {
				t.Errorf("got %s %v %q %q; want E16 at 3:%d %q %q", d.Code, d.Pos, d.Message, d.Hint, tc.col, tc.msg, tc.hint)
			}
			if !compile.With(pol, nil).HasErrors() {
				t.Error("With drops the error")
			}
		})
	}
}
