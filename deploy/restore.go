//go:build linux

package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/lang"
)

// A PolicyError is a policy that Restore could not compile.
type PolicyError struct {
	// File names the policy; Src is its text (nil for the fail-closed
	// policy, which is made from the record, not read).
	File string
	Src  []byte
	// Diags are what to show: a recorded policy's errors (its warnings
	// were shown when it was deployed), or all the diagnostics of the
	// fail-closed policy.
	Diags lang.Diagnostics
	// Closed is set for the fail-closed policy.
	Closed bool
}

func (e *PolicyError) Error() string {
	if e.Closed {
		return "the fail-closed policy does not compile"
	}
	return e.File + " has errors"
}

// Restored says what Restore did.
type Restored struct {
	// Record is the record read from the directory; nil when there is
	// none or it could not be read. When its State is record.Undeployed,
	// nothing was loaded, and nothing had to be.
	Record *record.Record
	// Err says why the recorded policy was not loaded; nil when it was
	// (or when the record says kwl was undeployed). A policy that does
	// not compile is a *PolicyError.
	Err error
	// Closed is the fail-closed policy, loaded instead when Err is set
	// and ClosedErr is not.
	Closed *record.Closed
	// ClosedErr says why the fail-closed policy could not be loaded
	// either: then nothing was.
	ClosedErr error
}

// Restore loads the policy that the record of dir names (see package
// record), compiled again for the backend and table it was deployed with,
// as Apply or ApplyIptables would; when it cannot, it loads the record's
// fail-closed policy instead. o's Table is the record's.
func Restore(ctx context.Context, o Options, dir string) *Restored {
	res := &Restored{}
	r, err := record.Load(dir)
	if err == nil {
		res.Record = r
		if r.State == record.Undeployed {
			return res
		}
		err = restorePolicy(ctx, o, r)
		if err == nil {
			return res
		}
	} else if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("no record of a deploy: %w", err)
	}
	res.Err = err
	c, err := record.LoadClosed(dir)
	if err == nil {
		err = restoreClosed(ctx, o, c, filepath.Join(dir, record.ClosedFile))
	}
	if err != nil {
		res.ClosedErr = err
		return res
	}
	res.Closed = c
	return res
}

// restorePolicy compiles the recorded policy and loads it.
func restorePolicy(ctx context.Context, o Options, r *record.Record) error {
	o.Table = r.Table
	o.afterBoot = true
	file := r.PolicyPath()
	b, ok := compile.Lookup(r.Backend)
	if !ok {
		return compile.UnknownError(r.Backend)
	}
	pol, rs, diags := compile.Load(file, r.Text, b.Lower)
	if err := policyErrors(file, r.Text, diags); err != nil {
		return err
	}
	o.Policy = PolicyID(r.Text)
	_, err := Load(ctx, o, r.Backend, pol, rs)
	return err
}

// ErrNothingToRenew is Renew's answer when the recorded policy has no
// secret knock: its table holds no tokens to renew, and is left alone.
var ErrNothingToRenew = errors.New("the deployed policy has no secret knock: no tokens to renew")

// Renew loads the tokens of the coming o.Tokens into the token sets of
// the policy that the record of dir names, by deploying it again: the
// live table must be the one loaded from it, and its state (doors, bans,
// the tokens left, a used token stays used) carries over; only windows
// after the last one loaded are added. When the record is missing, names
// another backend or a policy without secret knocks, or the live table
// is not the recorded policy's, it changes nothing: the tokens then run
// out, and the doors stop opening.
func Renew(ctx context.Context, o Options, dir string) (*Result, error) {
	r, err := record.Load(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("no record of a deploy in %s: %w", dir, err)
	case err != nil:
		return nil, err
	case r.State == record.Undeployed:
		return nil, fmt.Errorf("the record in %s says kwl was undeployed: nothing to renew", dir)
	case r.Backend != nft.Name:
		return nil, ErrNothingToRenew
	}
	o.Table = r.Table
	file := r.PolicyPath()
	pol, rs, diags := compile.Load(file, r.Text, nft.Lower)
	if err := policyErrors(file, r.Text, diags); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(pol.Doors, func(d *lang.Door) bool { return d.Secret != nil }) {
		return nil, ErrNothingToRenew
	}
	o.Policy = PolicyID(r.Text)
	o.Expect = o.Policy
	o.Guarded = Guarded(pol)
	return Apply(ctx, o, rs)
}

// policyErrors returns a *PolicyError with the errors of diags, or nil
// when there are none.
func policyErrors(file string, src []byte, diags lang.Diagnostics) error {
	var errs lang.Diagnostics
	for _, d := range diags {
		if d.Severity == lang.Error {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &PolicyError{File: file, Src: src, Diags: errs}
}

// restoreClosed loads a fail-closed policy, read from file.
func restoreClosed(ctx context.Context, o Options, c *record.Closed, file string) error {
	pol, err := c.Policy(file)
	if err != nil {
		return err
	}
	o.Table = c.Table
	b, ok := compile.Lookup(c.Backend)
	if !ok {
		return compile.UnknownError(c.Backend)
	}
	rs, own := b.Lower(pol)
	if diags := compile.With(pol, own); diags.HasErrors() {
		return &PolicyError{File: file, Diags: diags, Closed: true}
	}
	o.Policy = "fail-closed"
	_, err = Load(ctx, o, c.Backend, pol, rs)
	return err
}
