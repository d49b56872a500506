//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

// TestDeployCheck: kwl deploy --check exits 1 while the live rules differ
// from the policy (nothing loaded, another policy loaded) and 0 once they
// are as it says, on both backends, and changes nothing; the nft plan
// writes a new rule in nft syntax after its statement's file:line.
func TestDeployCheck(t *testing.T) {
	netns.NeedRoot(t, "iptables-restore", "ip6tables-restore")
	for _, backend := range []string{"nft", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := netns.ForTest(t, "kwlc-chk-"+backend[:3])
			rec := t.TempDir()
			base := []string{"--netns", ns.Name, "--state-dir", t.TempDir(), "--backend", backend, "--record-dir", rec}
			deploy := func(extra ...string) (int, string, string) {
				return kwlIn(append(append([]string{"deploy"}, base...), extra...)...)
			}
			if code, out, errs := deploy("--check", "../../examples/sshknock.kwl"); code != exitFail || !strings.Contains(errs, "the live rules differ") {
				t.Errorf("--check with nothing loaded: exit %d\n%s\n%s", code, out, errs)
			}
			if code, _, errs := deploy("../../examples/sshknock.kwl"); code != exitOK {
				t.Fatalf("deploy: %d\n%s", code, errs)
			}
			if code, out, errs := deploy("--check", "../../examples/sshknock.kwl"); code != exitOK {
				t.Errorf("--check of the deployed policy: exit %d\n%s\n%s", code, out, errs)
			}
			// Status says which policy is deployed, from the record.
			code, out, errs := kwlIn("status", "--netns", ns.Name, "--record-dir", rec)
			if code != exitOK || !strings.Contains(out, "examples/sshknock.kwl (sha256 ") || !strings.Contains(out, "deployed: ") || strings.Contains(out, "warning") {
				t.Errorf("status: exit %d\n%s\n%s", code, out, errs)
			}
			other := filepath.Join(t.TempDir(), "other.kwl")
			src, err := os.ReadFile("../../examples/sshknock.kwl")
			if err != nil {
				t.Fatal(err)
			}
			src = bytes.Replace(src, []byte("per source/32/64 log info"), []byte("per source/32/64 log notice"), 1)
			if err := os.WriteFile(other, src, 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs = deploy("--check", other)
			if code != exitFail {
				t.Errorf("--check of another policy: exit %d\n%s\n%s", code, out, errs)
			}
			if backend == "nft" {
				for _, want := range []string{"+ rule in chain lim_ssh, " + other + ":6: limit rate 10/minute burst 10 packets log prefix \"kwl limit ssh: \" level notice", "plan: ",
					// The rule it removes, in nft syntax too: the record
					// of the deploy has the policy it came from.
					"examples/sshknock.kwl:6: limit rate 10/minute burst 10 packets log prefix \"kwl limit ssh: \" level info"} {
					if !strings.Contains(out, want) {
						t.Errorf("the plan lacks %q:\n%s", want, out)
					}
				}
			}
			if code, out, errs := deploy("--check", "../../examples/sshknock.kwl"); code != exitOK {
				t.Errorf("--check changed the kernel: the deployed policy now differs: exit %d\n%s\n%s", code, out, errs)
			}
			kwlIn(append([]string{"undeploy"}, base[:4]...)...)
		})
	}
}
