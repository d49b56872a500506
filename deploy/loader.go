//go:build linux

package deploy

import (
	"context"
	"fmt"
	"io"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

// A Loader puts the rulesets of one compile.Backend into the kernel and
// takes them out again. The registry (Loaders, LoaderFor) has one for
// every backend, under the backend's name, so that kwl deploy, undeploy
// and restore name no backend themselves.
type Loader interface {
	// Name is the name of the backend whose rulesets the loader loads.
	Name() string
	// Load replaces what the loader loaded before with rs, a ruleset of
	// its backend, all or nothing (see Apply and ApplyIptables). The
	// Report is nil when nothing was looked at.
	Load(ctx context.Context, o Options, rs compile.Ruleset) (Report, error)
	// Unload removes what the loader loaded and nothing else, and
	// reports whether there was any.
	Unload(ctx context.Context, o Options) (bool, error)
	// What names what the loader loads, for messages ("table inet kwl").
	What(o Options) string
	// Missing says, in a sentence, that nothing of it is loaded.
	Missing(o Options) string
}

// A Report is what a Load did, or would do in a dry run.
type Report interface {
	// WriteChanges writes a dry run's changes to w.
	WriteChanges(w io.Writer)
	// Pending reports whether a dry run found changes to make: the
	// live rules differ from the policy's (drift), or are not loaded.
	Pending() bool
	// String says in one line what was loaded.
	String() string
}

// loaders is the registry, in the order of compile.Backends.
var loaders = []Loader{nftLoader{}, iptablesLoader{}}

// Loaders returns the loaders, in the order of compile.Backends.
func Loaders() []Loader { return append([]Loader(nil), loaders...) }

// LoaderFor returns the loader of the backend of a name.
func LoaderFor(backend string) (Loader, error) {
	for _, l := range loaders {
		if l.Name() == backend {
			return l, nil
		}
	}
	return nil, compile.UnknownError(backend)
}

// Load loads rs, the ruleset of pol on backend, with the loader of
// backend: what kwl deploy and kwl restore do once a policy has
// compiled. o.Guarded is set from pol; o.Policy names the policy
// (PolicyID).
func Load(ctx context.Context, o Options, backend string, pol *lang.Policy, rs compile.Ruleset) (Report, error) {
	l, err := LoaderFor(backend)
	if err != nil {
		return nil, err
	}
	o.Guarded = Guarded(pol)
	return l.Load(ctx, o, rs)
}

type nftLoader struct{}

func (nftLoader) Name() string { return nft.Name }

func (nftLoader) Load(ctx context.Context, o Options, rs compile.Ruleset) (Report, error) {
	r, ok := rs.(*nft.Ruleset)
	if !ok || r == nil {
		return nil, fmt.Errorf("the nft backend cannot load a %T", rs)
	}
	res, err := Apply(ctx, o, r)
	if res == nil {
		return nil, err
	}
	return res, err
}

func (nftLoader) Unload(ctx context.Context, o Options) (bool, error) { return Undeploy(ctx, o) }

func (nftLoader) What(o Options) string { return "table inet " + o.table() }

func (l nftLoader) Missing(o Options) string { return l.What(o) + " is not loaded" }

// WriteChanges writes the changes of a dry run as nft list ruleset would
// show them.
func (r *Result) WriteChanges(w io.Writer) {
	if r.Changes != nil {
		r.Changes.Write(w)
	}
}

// Pending reports whether the dry run found changes.
func (r *Result) Pending() bool { return r.Changes != nil && r.Changes.Pending() }

func (r *Result) String() string {
	kept := 0
	for _, n := range r.Kept {
		kept += n
	}
	return fmt.Sprintf("table %s loaded (%d netlink messages in one transaction; %d set element(s) carried over)", r.Table, r.Messages, kept)
}

type iptablesLoader struct{}

func (iptablesLoader) Name() string { return iptables.Name }

func (iptablesLoader) Load(ctx context.Context, o Options, rs compile.Ruleset) (Report, error) {
	r, ok := rs.(*iptables.Ruleset)
	if !ok || r == nil {
		return nil, fmt.Errorf("the iptables backend cannot load a %T", rs)
	}
	res, err := ApplyIptables(ctx, o, r)
	if res == nil {
		return nil, err
	}
	return res, err
}

func (iptablesLoader) Unload(ctx context.Context, o Options) (bool, error) {
	return UndeployIptables(ctx, o)
}

func (iptablesLoader) What(Options) string { return "kwl's iptables chains" }

func (l iptablesLoader) Missing(o Options) string { return l.What(o) + " are not loaded" }

// WriteChanges writes the changes of a dry run, one line each, or "no
// change".
func (r *IptablesResult) WriteChanges(w io.Writer) {
	for _, c := range r.Changes {
		fmt.Fprintln(w, c)
	}
	if len(r.Changes) == 0 {
		fmt.Fprintln(w, "no change")
	}
}

// Pending reports whether the dry run found changes.
func (r *IptablesResult) Pending() bool { return len(r.Changes) > 0 }

func (r *IptablesResult) String() string {
	kept := 0
	for _, n := range r.Kept {
		kept += n
	}
	return fmt.Sprintf("iptables rules loaded (%d change(s), one commit per table; %d recent list entr(ies) kept)", len(r.Changes), kept)
}
