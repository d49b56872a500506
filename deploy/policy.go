//go:build linux

package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
)

// PolicyID identifies a policy's source in kwl's table mark
// (Options.Policy): "sha256:" and the first 8 bytes of its hash, in hex.
func PolicyID(src []byte) string {
	h := sha256.Sum256(src)
	return "sha256:" + hex.EncodeToString(h[:8])
}

// Guarded lists the services p guards with knocks (Options.Guarded).
func Guarded(p *lang.Policy) []string {
	var out []string
	for _, s := range p.Services {
		if s.Guarded {
			out = append(out, s.Name)
		}
	}
	return out
}

// statements counts the statements of p that change what the firewall
// does.
func statements(p *lang.Policy) int {
	return len(p.Doors) + len(p.Revokes) + len(p.Limits) + len(p.Allows)
}

// An EmptyPolicyError refuses a policy with no statement: deploying it
// would remove every guard kwl keeps.
type EmptyPolicyError struct {
	File string
}

func (e *EmptyPolicyError) Error() string {
	return e.File + " has no statement: deploying it would remove every guard kwl keeps"
}

// A TestError refuses a policy whose own test blocks fail on the backend
// it is to be deployed with.
type TestError struct {
	File, Backend string
	// Failed holds the results of the tests that failed, in the order
	// of the policy.
	Failed []sim.TestResult
}

func (e *TestError) Error() string {
	return fmt.Sprintf("%s fails its own tests on the %s backend", e.File, e.Backend)
}

// Vet refuses, before the kernel is touched, a checked policy that would
// expose what it means to guard: one with no statement (an
// *EmptyPolicyError, unless force), or one whose test blocks fail on
// backend in the simulator (a *TestError). A redeploy that unguards a
// service of the live table is refused later, by Apply, which reads it.
func Vet(p *lang.Policy, backend string, force bool) error {
	if statements(p) == 0 && !force {
		return &EmptyPolicyError{File: p.File}
	}
	var failed []sim.TestResult
	for _, r := range sim.RunTests(p, []string{backend}) {
		if !r.Passed() {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		return &TestError{File: p.File, Backend: backend, Failed: failed}
	}
	return nil
}

// RecordDeploy records a deploy that loaded, for Restore: in dir, the
// policy text src, read from file (recorded as an absolute path, unless
// it is "-") and checked as p, deployed with backend into o's table
// (DefaultTable when o.Table is empty), with its fail-closed policy; kwl
// is the version of kwl that deployed it. A record that cannot be written
// is an error: the next boot would load another policy.
func RecordDeploy(dir string, o Options, backend, file string, src []byte, p *lang.Policy, kwl string) error {
	table := o.table()
	name := file
	if abs, err := filepath.Abs(file); err == nil && file != "-" {
		name = abs
	}
	r := &record.Record{Backend: backend, Table: table, File: name, Text: src, Kwl: kwl}
	return record.Save(dir, r, record.ClosedOf(p, backend, table, src))
}

// RecordUndeploy marks the record of dir so that Restore loads nothing,
// when it names what an undeploy of backend ("" for both) from o's table
// removed; kwl is the version of kwl that undeployed.
func RecordUndeploy(dir string, o Options, backend, kwl string) error {
	table := o.table()
	backends := []string{backend}
	if backend == "" {
		backends = compile.Names()
	}
	for _, b := range backends {
		marked, err := record.MarkUndeployed(dir, b, table, kwl)
		if err != nil || marked {
			return err
		}
	}
	return nil
}
