//go:build linux

package deploy

import (
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/internal/irtest"
)

// TestEveryBackendHasALoader holds the two registries together: a
// backend that kwl compiles for but cannot load would be refused by kwl
// deploy only at the last step, and one kwl restore could not restore.
func TestEveryBackendHasALoader(t *testing.T) {
	var names []string
	for _, l := range Loaders() {
		names = append(names, l.Name())
	}
	if got, want := names, compile.Names(); len(got) != len(want) {
		t.Fatalf("loaders %v, backends %v", got, want)
	}
	for i, b := range compile.Backends() {
		if names[i] != b.Name() {
			t.Errorf("loader %d is %s, backend %d is %s", i, names[i], i, b.Name())
		}
		l, err := LoaderFor(b.Name())
		if err != nil || l.Name() != b.Name() {
			t.Errorf("LoaderFor(%s) = %v, %v", b.Name(), l, err)
		}
	}
	if _, err := LoaderFor("pf"); err == nil {
		t.Errorf("LoaderFor(pf) found a loader")
	}
}

// TestLoaderRefusesAnotherBackendsRuleset: a ruleset handed to the wrong
// loader is an error before anything is read or changed.
func TestLoaderRefusesAnotherBackendsRuleset(t *testing.T) {
	for _, l := range Loaders() {
		for _, b := range compile.Backends() {
			if b.Name() == l.Name() {
				continue
			}
			rs, _ := b.Lower(irtest.Load(t, knockSSH))
			if rep, err := l.Load(t.Context(), Options{NetNS: "/nonexistent"}, rs); err == nil || rep != nil {
				t.Errorf("%s loader took a %s ruleset: %v, %v", l.Name(), b.Name(), rep, err)
			}
		}
	}
}
