package nft

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/internal/irtest"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// chainText returns the rules of a chain, one per line, as nft writes them.
func chainText(rs *Ruleset, name string) string {
	for _, c := range rs.Table.Chains {
		if c.Name == name {
			var b strings.Builder
			for _, r := range c.Rules {
				b.WriteString(RuleString(r) + "\n")
			}
			return b.String()
		}
	}
	return ""
}

func TestLowerStatements(t *testing.T) {
	tests := []struct {
		name   string
		policy func(b *irtest.B)
		chain  string
		want   []string // substrings of the chain's rules, in order
	}{{
		name:   "single knock opens the door",
		policy: func(b *irtest.B) { b.Door("ssh", 0, time.Minute, irtest.TCP(1600)) },
		chain:  "knock",
		want: []string{
			"meta nfproto ipv4 ct state new meta l4proto tcp th dport 1600 tcp flags & (syn | ack) == syn update @door_ssh_4 { ip saddr }",
			"meta nfproto ipv6 ct state new meta l4proto tcp th dport 1600 tcp flags & (syn | ack) == syn update @door_ssh_6 { ip6 saddr }",
			"meta l4proto tcp th dport 1600 drop",
		},
	}, {
		name:   "guarded service: drop without a door, accept with one",
		policy: func(b *irtest.B) { b.Door("ssh", 0, time.Minute, irtest.TCP(1600)) },
		chain:  "svc_ssh",
		want: []string{
			"meta nfproto ipv4 ct state new ip saddr != @door_ssh_4 drop",
			"meta nfproto ipv6 ct state new ip6 saddr != @door_ssh_6 drop",
			"meta nfproto ipv4 ct state new ip saddr @door_ssh_4 accept",
		},
	}, {
		name: "close ports delete the door",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Close("ssh", irtest.TCP(1599), irtest.TCP(1601))
		},
		chain: "knock",
		want: []string{
			"th dport { 1599, 1601 } tcp flags & (syn | ack) == syn delete @door_ssh_4 { ip saddr }",
			"th dport 1600 drop",
			"th dport { 1599, 1601 } drop",
		},
	}, {
		name: "sequence: restart, reset out of order, advance",
		policy: func(b *irtest.B) {
			b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.UDP(8000), irtest.TCP(9000))
		},
		chain: "knock",
		want: []string{
			"th dport 7000 tcp flags & (syn | ack) == syn delete @seq_ssh_2_4 { ip saddr } update @seq_ssh_1_4 { ip saddr }",
			"meta l4proto udp th dport 8000 ip saddr != @seq_ssh_1_4 delete @seq_ssh_1_4 { ip saddr } delete @seq_ssh_2_4 { ip saddr }",
			"meta l4proto udp th dport 8000 ip saddr @seq_ssh_1_4 delete @seq_ssh_1_4 { ip saddr } update @seq_ssh_2_4 { ip saddr }",
			"th dport 9000 tcp flags & (syn | ack) == syn ip saddr != @seq_ssh_2_4 delete @seq_ssh_1_4 { ip saddr } delete @seq_ssh_2_4 { ip saddr }",
			"th dport 9000 tcp flags & (syn | ack) == syn ip saddr @seq_ssh_2_4 delete @seq_ssh_1_4 { ip saddr } delete @seq_ssh_2_4 { ip saddr } update @door_ssh_4 { ip saddr }",
		},
	}, {
		name: "closing sequence deletes every door of the service",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Door("ssh", 0, time.Minute, irtest.TCP(1700))
			b.CloseSeq("ssh", 2*time.Second, irtest.TCP(9000), irtest.TCP(7000))
		},
		chain: "knock",
		want: []string{
			"th dport 7000 tcp flags & (syn | ack) == syn ip saddr @rseq_ssh_1_4 delete @rseq_ssh_1_4 { ip saddr } delete @door_ssh_4 { ip saddr } delete @door_ssh_2_4 { ip saddr }",
		},
	}, {
		name:   "per-source limit with a mask",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 24, 64, 0) },
		chain:  "svc_ssh",
		want: []string{
			"meta nfproto ipv4 ct state new update @lim_ssh_4 { ip saddr and 255.255.255.0 limit rate over 3/minute burst 3 packets } drop",
			"meta nfproto ipv6 ct state new update @lim_ssh_6 { ip6 saddr and ffff:ffff:ffff:ffff:: limit rate over 3/minute burst 3 packets } drop",
			"ct state new accept",
		},
	}, {
		name:   "global limit: one bucket, rate in a whole unit",
		policy: func(b *irtest.B) { b.Limit("https", 3, 20*time.Second, 0, 0, 0) },
		chain:  "svc_https",
		want:   []string{"ct state new limit rate over 9/minute burst 3 packets drop", "ct state new accept"},
	}, {
		name:   "ban: checked first, added over the limit",
		policy: func(b *irtest.B) { b.Limit("ssh", 5, time.Minute, 32, 128, 5*time.Minute) },
		chain:  "svc_ssh",
		want: []string{
			"meta nfproto ipv4 ct state new ip saddr @ban_ssh_4 drop",
			"update @lim_ssh_4 { ip saddr limit rate over 5/minute burst 5 packets } goto over_ssh",
		},
	}, {
		name:   "ban chain adds then drops",
		policy: func(b *irtest.B) { b.Limit("ssh", 5, time.Minute, 32, 128, 5*time.Minute) },
		chain:  "over_ssh",
		want:   []string{"meta nfproto ipv4 update @ban_ssh_4 { ip saddr }", "meta nfproto ipv6 update @ban_ssh_6 { ip6 saddr }", "drop"},
	}, {
		name: "allow bypasses the guard",
		policy: func(b *irtest.B) {
			b.Allow("ssh", "192.168.0.0/16", "fd00::/8")
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
		},
		chain: "svc_ssh",
		want:  []string{"meta nfproto ipv4 ip saddr 192.168.0.0/16 accept", "meta nfproto ipv6 ip6 saddr fd00::/8 accept", "!= @door_ssh_4 drop"},
	}, {
		name: "knock from sources, one family",
		policy: func(b *irtest.B) {
			d := b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			d.From = irtest.Prefixes("203.0.113.0/24", "203.0.113.7")
		},
		chain: "knock",
		want: []string{
			"meta nfproto ipv4 ip saddr 203.0.113.0/24 ct state new meta l4proto tcp th dport 1600 tcp flags & (syn | ack) == syn update @door_ssh_4 { ip saddr }",
			"meta nfproto ipv4 ip saddr 203.0.113.0/24 meta l4proto tcp th dport 1600 drop",
		},
	}, {
		name: "forwarded service: DNAT of local destinations",
		policy: func(b *irtest.B) {
			b.Service("inside", "192.168.1.5", irtest.TCP(22))
			b.Door("inside", 0, time.Minute, irtest.TCP(1600))
		},
		chain: "prerouting",
		want:  []string{"meta nfproto ipv4 fib daddr type local meta l4proto tcp th dport 22 dnat ip to 192.168.1.5"},
	}, {
		name: "forwarded service: guard by original port and internal host",
		policy: func(b *irtest.B) {
			b.Service("inside", "192.168.1.5", irtest.TCP(22))
			b.Door("inside", 0, time.Minute, irtest.TCP(1600))
		},
		chain: "forward",
		want: []string{"ct state established,related accept",
			"meta nfproto ipv4 ip daddr 192.168.1.5 meta l4proto tcp ct original proto-dst 22 jump svc_inside"},
	}, {
		name: "logging with level and default prefix",
		policy: func(b *irtest.B) {
			d := b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			d.Log = &lang.Log{Level: "info"}
		},
		chain: "knock",
		want:  []string{`th dport 1600 log prefix "kwl knock ssh: " level info drop`},
	}, {
		name:   "limit: a TCP packet new to conntrack but no SYN goes past it",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 32, 128, 0) },
		chain:  "svc_ssh",
		want: []string{
			"meta l4proto tcp tcp flags & (syn | ack) != syn ct state new accept",
			"meta nfproto ipv4 ct state new update @lim_ssh_4",
			"ct state new accept",
		},
	}, {
		name: "limit on a knocked service: not a SYN goes to the open doors",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Limit("ssh", 3, time.Minute, 32, 128, 0)
		},
		chain: "svc_ssh",
		want: []string{
			"!= @door_ssh_6 drop",
			"meta l4proto tcp tcp flags & (syn | ack) != syn meta nfproto ipv4 ct state new ip saddr @door_ssh_4 accept",
			"meta l4proto tcp tcp flags & (syn | ack) != syn meta nfproto ipv6 ct state new ip6 saddr @door_ssh_6 accept",
			"update @lim_ssh_4",
			"meta nfproto ipv4 ct state new ip saddr @door_ssh_4 accept",
		},
	}, {
		name:   "input: established first, then knocks, then services",
		policy: func(b *irtest.B) { b.Door("ssh", 0, time.Minute, irtest.TCP(1600)) },
		chain:  "input",
		want:   []string{"ct state established,related accept", "jump knock", "meta l4proto tcp th dport 22 jump svc_ssh"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := irtest.New("t.kwl")
			tc.policy(b)
			rs, diags := Lower(b.P)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := chainText(rs, tc.chain)
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("chain %s lacks (in order) %q:\n%s", tc.chain, w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// TestUDPHasNoFlags: the SYN matches are for TCP only; a UDP knock, close
// port or limit counts every datagram conntrack calls new.
func TestUDPHasNoFlags(t *testing.T) {
	b := irtest.New("t.kwl")
	b.Door("ssh", 0, time.Minute, irtest.UDP(1600))
	b.Close("ssh", irtest.UDP(1599))
	b.Limit("ntp", 3, time.Minute, 32, 128, 0)
	rs, diags := Lower(b.P)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, ch := range []string{"knock", "svc_ntp"} {
		if got := chainText(rs, ch); got == "" || strings.Contains(got, "tcp flags") {
			t.Errorf("chain %s:\n%s", ch, got)
		}
	}
}

func TestOriginsAndNames(t *testing.T) {
	for name, p := range irtest.Policies() {
		rs, _ := Lower(p)
		seen := map[string]bool{}
		for _, s := range rs.Table.Sets {
			if seen[s.Name] {
				t.Errorf("%s: set %s declared twice", name, s.Name)
			}
			seen[s.Name] = true
		}
		for _, c := range rs.Table.Chains {
			for _, r := range c.Rules {
				var decides bool
				for _, e := range r.Exprs {
					if v, ok := e.(*Verdict); ok && (v.Kind == Drop || v.Kind == Accept) {
						decides = true
					}
					if d, ok := e.(*Dynset); ok && !seen[d.Set] {
						t.Errorf("%s: rule uses undeclared set %s", name, d.Set)
					}
				}
				// Every drop and accept but the established-accept is
				// attributed to a statement.
				if decides && !r.Origin.IsValid() && !strings.Contains(r.Comment, "established") {
					t.Errorf("%s: chain %s: rule without origin: %s", name, c.Name, RuleString(r))
				}
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	b := irtest.New("w.kwl")
	b.Door("ssh", 500*time.Millisecond, 2*time.Second, irtest.TCP(7000), irtest.TCP(8000))
	b.Limit("ssh", 3, time.Minute, 32, 128, time.Minute)
	b.Limit("https", 7, 13*time.Second, 0, 0, 0)
	_, diags := Lower(b.P)
	codes := map[string]int{}
	for _, d := range diags {
		if d.Severity != lang.Warning || !d.Pos.IsValid() {
			t.Errorf("not a positioned warning: %v", d)
		}
		codes[d.Code]++
	}
	for code, n := range map[string]int{"L05": 1, "L10": 2, "L09": 1, "L13": 3, "L07": 1} {
		if codes[code] != n {
			t.Errorf("%s: %d warnings, want %d\n%v", code, codes[code], n, diags)
		}
	}
}

// goldens returns the policies with golden files: every example (through
// lang.Load) and the hand-built IR of irtest.
func goldens(t *testing.T) map[string]*lang.Policy {
	out := map[string]*lang.Policy{}
	files, _ := filepath.Glob("../../examples/*.kwl")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".kwl")
		p, diags := lang.Load(filepath.Base(f), src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		out[name] = p
	}
	for name, p := range irtest.Policies() {
		out["ir_"+name] = p
	}
	return out
}

func TestGolden(t *testing.T) {
	for name, p := range goldens(t) {
		t.Run(name, func(t *testing.T) {
			rs, diags := Lower(p)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got := rs.Render()
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendering; run go test -update and review the diff", path)
			}
		})
	}
}

// needRoot skips a test that needs root, unless KWL_KERNEL_TESTS=1 makes
// the skip a failure.
func needRoot(t *testing.T, tools ...string) { t.Helper(); netns.NeedRoot(t, tools...) }

// newNS creates a private network namespace, removed when the test ends.
func newNS(t *testing.T) string { t.Helper(); return netns.ForTest(t, "kwlc-nft").Name }

// TestGoldenLoads checks every golden file with nft -c, then loads it
// twice into a private namespace (the second load replaces the table).
func TestGoldenLoads(t *testing.T) {
	needRoot(t, "nft")
	ns := newNS(t)
	files, _ := filepath.Glob("testdata/*.nft")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		for _, args := range [][]string{{"-c", "-f", f}, {"-f", f}, {"-f", f}} {
			cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
}
