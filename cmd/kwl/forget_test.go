//go:build linux

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/internal/netns"
)

// TestUnbanRevoke: kwl revoke and kwl unban take a source out of kwl's
// live door and ban sets (nft) and lists (iptables) in a namespace, and
// leave the other sources and the policy as they were.
func TestUnbanRevoke(t *testing.T) {
	netns.NeedRoot(t, "nft", "iptables-restore", "ip6tables-restore")
	const policy = "../../examples/sources.kwl" // a door, a ban
	for _, backend := range []string{"nft", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			ns := netns.ForTest(t, "kwlc-fg-"+backend[:3])
			nsf := []string{"--netns", ns.Name}
			if code, _, errs := kwlIn(append(append([]string{"deploy", "--state-dir", t.TempDir(), "--backend", backend}, nsf...), policy)...); code != exitOK {
				t.Fatalf("deploy: %d\n%s", code, errs)
			}
			add := func(set, addr string) {
				t.Helper()
				var err error
				var out []byte
				if backend == "nft" {
					out, err = ns.Run("nft", "add", "element", "inet", "kwl", set, "{ "+addr+" timeout 60s }")
				} else {
					out, err = ns.RunInput([]byte("+"+addr+"\n"), "tee", "/proc/net/xt_recent/kwl_"+set)
				}
				if err != nil {
					t.Fatalf("add %s to %s: %v %s", addr, set, err, out)
				}
			}
			door, ban := "door_ssh_4", "ban_ssh_4"
			add(door, "203.0.113.7")
			add(door, "203.0.113.8")
			add(ban, "198.51.100.66")
			code, out, errs := kwlIn(append(append([]string{"revoke"}, nsf...), "203.0.113.7")...)
			if code != exitOK || !strings.Contains(out, door) {
				t.Errorf("revoke: %d\n%s%s", code, out, errs)
			}
			if code, _, errs := kwlIn(append(append([]string{"revoke"}, nsf...), "203.0.113.7")...); code != exitFail || !strings.Contains(errs, "nothing to do") {
				t.Errorf("revoke again: %d, want 1 and nothing to do\n%s", code, errs)
			}
			code, out, errs = kwlIn(append(append([]string{"unban", "--service", "ssh"}, nsf...), "198.51.100.66")...)
			if code != exitOK || !strings.Contains(out, ban) {
				t.Errorf("unban: %d\n%s%s", code, out, errs)
			}
			_, st, _ := kwlIn(append([]string{"status", "--format", "json"}, nsf...)...)
			var parsed struct {
				Loaded     bool                    `json:"loaded"`
				Statements []deploy.StatementState `json:"statements"`
				Iptables   struct{ Loaded bool }   `json:"iptables"`
			}
			if err := json.Unmarshal([]byte(st), &parsed); err != nil || parsed.Loaded != (backend == "nft") || parsed.Iptables.Loaded != (backend == "iptables") {
				t.Errorf("status --format json: %v %+v\n%s", err, parsed, st)
			}
			for _, gone := range []string{"203.0.113.7", "198.51.100.66"} {
				if strings.Contains(st, `"`+gone+`"`) {
					t.Errorf("%s still in the status:\n%s", gone, st)
				}
			}
			if !strings.Contains(st, `"203.0.113.8"`) {
				t.Errorf("the other door was closed too:\n%s", st)
			}
			kwlIn(append([]string{"undeploy", "--state-dir", t.TempDir()}, nsf...)...)
		})
	}
}
