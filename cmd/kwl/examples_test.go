package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/internal/irtest"
)

// TestExamplesCheckClean: every shipped example checks with no warning
// on each backend that compiles it (irtest.Examples), so that a warning
// on a user's policy is news worth acting on.
func TestExamplesCheckClean(t *testing.T) {
	for _, b := range compile.Names() {
		for _, f := range irtest.Examples(t, "../../examples", b) {
			var out, errb bytes.Buffer
			env := &cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
			if code := run(env, []string{"check", "--strict", "--backend", b, f}); code != exitOK {
				t.Errorf("kwl check --strict --backend %s %s: exit %d\n%s", b, filepath.Base(f), code, errb.String())
			}
		}
	}
}
