package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestNeedLinux: what kwl deploy, status, undeploy and restore do on a
// system other than Linux: the help when asked for, else the refusal.
func TestNeedLinux(t *testing.T) {
	for _, name := range []string{"deploy", "status", "undeploy", "restore"} {
		var out, errb bytes.Buffer
		env := &cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
		if code := needLinux(env, name, []string{"policy.kwl"}); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", name, code, exitUsage)
		}
		if want := "kwl " + name + " needs Linux (nf_tables)\n"; errb.String() != want {
			t.Errorf("%s: stderr %q, want %q", name, errb.String(), want)
		}
		errb.Reset()
		if code := needLinux(env, name, []string{"--help"}); code != exitOK {
			t.Errorf("%s --help: exit %d, want %d", name, code, exitOK)
		}
		if !strings.Contains(out.String(), "usage: kwl "+name) {
			t.Errorf("%s --help: no usage on stdout in %q", name, out.String())
		}
	}
}
