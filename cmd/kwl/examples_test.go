package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamplesCheckClean: every shipped example checks with no warning,
// so that a warning on a user's policy is news worth acting on.
func TestExamplesCheckClean(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.kwl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		var out, errb bytes.Buffer
		env := &cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
		if code := run(env, []string{"check", "--strict", f}); code != exitOK {
			t.Errorf("kwl check --strict %s: exit %d\n%s", filepath.Base(f), code, errb.String())
		}
	}
}
