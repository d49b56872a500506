package compile

import (
	"fmt"
	"strings"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

// A Backend compiles checked policies for one kernel mechanism. The
// registry (Backends, Lookup) is the one list of them: the --backend
// flags, the test steps' overrides ("expect drop iptables accept") and
// the simulator (sim.New) take their names from it.
type Backend interface {
	// Name is how --backend and a test step name the backend.
	Name() string
	// Lower turns a checked policy into the backend's ruleset data, with
	// the backend's own diagnostics (With adds the shared ones).
	Lower(p *lang.Policy) (Ruleset, lang.Diagnostics)
	// Render prints a ruleset of this backend as kwl compile does by
	// default; a ruleset of another backend is an error.
	Render(rs Ruleset) (string, error)
}

// A Ruleset is the data a Backend lowers a policy into, which the
// simulator executes and deploy loads: an *nft.Ruleset or an
// *iptables.Ruleset.
type Ruleset any

// backends is the registry, in the order kwl runs them when none is
// named: the first is the default of --backend.
var backends = []Backend{nftBackend{}, iptablesBackend{}}

// Backends returns every backend, the default first. The slice is a copy.
func Backends() []Backend { return append([]Backend(nil), backends...) }

// Lookup returns the backend of a name.
func Lookup(name string) (Backend, bool) {
	for _, b := range backends {
		if b.Name() == name {
			return b, true
		}
	}
	return nil, false
}

// Names returns the names of the backends, the default first.
func Names() []string {
	var out []string
	for _, b := range backends {
		out = append(out, b.Name())
	}
	return out
}

// NameList joins the names of the backends with sep, for help texts and
// messages ("nft|iptables", "nft or iptables").
func NameList(sep string) string { return strings.Join(Names(), sep) }

// UnknownError is the error of a backend name that Lookup does not know.
func UnknownError(name string) error {
	return fmt.Errorf("unknown backend %q (%s)", name, NameList(" or "))
}

type nftBackend struct{}

func (nftBackend) Name() string { return nft.Name }

func (nftBackend) Lower(p *lang.Policy) (Ruleset, lang.Diagnostics) { return nft.Lower(p) }

func (nftBackend) Render(rs Ruleset) (string, error) {
	r, ok := rs.(*nft.Ruleset)
	if !ok {
		return "", fmt.Errorf("nft cannot render a %T", rs)
	}
	return r.Render()
}

type iptablesBackend struct{}

func (iptablesBackend) Name() string { return iptables.Name }

func (iptablesBackend) Lower(p *lang.Policy) (Ruleset, lang.Diagnostics) { return iptables.Lower(p) }

// Render prints the iptables-restore input, then the ip6tables-restore
// input, of a reload (iptables.Ruleset.RenderReload).
func (iptablesBackend) Render(rs Ruleset) (string, error) {
	r, ok := rs.(*iptables.Ruleset)
	if !ok {
		return "", fmt.Errorf("iptables cannot render a %T", rs)
	}
	v4, v6, err := r.RenderReload()
	return v4 + "\n" + v6, err
}
