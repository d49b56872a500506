//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

// kwlIn runs kwl in-process and returns its exit code, stdout and stderr.
func kwlIn(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(&cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// iptablesSave returns both families' iptables-save output in ns,
// without comments.
func iptablesSave(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := ns.Run(cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// TestDeployIptablesCLI: kwl deploy --backend iptables, then plain kwl
// status and kwl undeploy (no --backend) find and remove what it loaded;
// a dry run changes nothing; kwl compile's output loaded twice (after
// --first once) leaves one jump, and undeploy removes that too.
func TestDeployIptablesCLI(t *testing.T) {
	netns.NeedRoot(t, "iptables-restore", "ip6tables-restore")
	ns := netns.ForTest(t, "kwlc-cli")
	state := t.TempDir()
	base := []string{"--netns", ns.Name, "--state-dir", state}

	args := append(append([]string{"deploy"}, base...), "--backend", "iptables", "../../examples/forward.kwl")
	if code, _, errs := kwlIn(args...); code != exitOK {
		t.Fatalf("deploy forward.kwl: %d\n%s", code, errs)
	}
	loaded := iptablesSave(t, ns)
	args = append(append([]string{"deploy"}, base...), "--backend", "iptables", "--dry-run", "../../examples/sshknock.kwl")
	code, out, errs := kwlIn(args...)
	if code != exitOK || !strings.Contains(out, "iptables nat: - chain kwl-prerouting") {
		t.Errorf("dry run: %d\n%s\n%s", code, out, errs)
	}
	if s := iptablesSave(t, ns); s != loaded {
		t.Errorf("the dry run changed the rules:\n%s", s)
	}
	code, out, errs = kwlIn("status", "--netns", ns.Name)
	if code != exitOK || !strings.Contains(out, "iptables table nat") || !strings.Contains(out, "jump -A INPUT -j kwl-input") {
		t.Errorf("status: %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = kwlIn(append([]string{"undeploy"}, base...)...)
	if code != exitOK {
		t.Fatalf("undeploy: %d\n%s", code, errs)
	}
	if s := iptablesSave(t, ns); strings.Contains(s, "kwl") {
		t.Errorf("after undeploy:\n%s", s)
	}

	// kwl compile's output, loaded by hand.
	for i, first := range []bool{true, false, false} {
		args := []string{"compile", "--backend", "iptables", "--family", "ipv4"}
		if first {
			args = append(args, "--first")
		}
		args = append(args, "../../examples/sshknock.kwl")
		code, out, errs := kwlIn(args...)
		if code != exitOK {
			t.Fatalf("compile: %d\n%s", code, errs)
		}
		if b, err := ns.RunInput([]byte(out), "iptables-restore", "--noflush"); err != nil {
			t.Fatalf("load %d: %v\n%s", i+1, err, b)
		}
	}
	if n := strings.Count(iptablesSave(t, ns), "-A INPUT -j kwl-input\n"); n != 1 {
		t.Errorf("%d jumps from INPUT after three loads", n)
	}
	code, out, _ = kwlIn("status", "--netns", ns.Name, "--format", "json")
	if code != exitOK || !strings.Contains(out, `"iptables": {`) || !strings.Contains(out, `"loaded": true`) {
		t.Errorf("status --format json: %d\n%s", code, out)
	}
	code, _, errs = kwlIn(append([]string{"undeploy"}, base...)...)
	if code != exitOK {
		t.Fatalf("undeploy: %d\n%s", code, errs)
	}
	if s := iptablesSave(t, ns); strings.Contains(s, "kwl") {
		t.Errorf("after undeploy:\n%s", s)
	}
	code, _, errs = kwlIn(append([]string{"undeploy"}, base...)...)
	if code != exitOK || !strings.Contains(errs, "nothing to do") {
		t.Errorf("second undeploy: %d\n%s", code, errs)
	}
}
