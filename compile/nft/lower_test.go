package nft

import (
	"flag"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/internal/polgen"
	"kwl.dev/kwl/lang"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// chainText returns the rules of a chain, one per line, as nft writes them.
func chainText(rs *Ruleset, name string) string {
	for _, c := range rs.Table.Chains {
		if c.Name == name {
			var b strings.Builder
			for _, r := range c.Rules {
				b.WriteString(ruleText(r) + "\n")
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
		name: "sequence: restart, reset out of order, advance; a repeat of the last counted knock does none of them",
		policy: func(b *irtest.B) {
			b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.UDP(8000), irtest.TCP(9000))
		},
		chain: "knock",
		want: []string{
			"th dport 7000 tcp flags & (syn | ack) == syn ip saddr != @seq_ssh_1_4 jump seq_ssh_reset_4",
			"th dport 7000 tcp flags & (syn | ack) == syn ip saddr != @seq_ssh_1_4 update @seq_ssh_1_4 { ip saddr }",
			"meta l4proto udp th dport 8000 ip saddr != @seq_ssh_1_4 ip saddr != @seq_ssh_2_4 jump seq_ssh_reset_4",
			"meta l4proto udp th dport 8000 ip saddr @seq_ssh_1_4 delete @seq_ssh_1_4 { ip saddr } update @seq_ssh_2_4 { ip saddr }",
			"th dport 9000 tcp flags & (syn | ack) == syn ip saddr != @seq_ssh_2_4 jump seq_ssh_reset_4",
			"th dport 9000 tcp flags & (syn | ack) == syn ip saddr @seq_ssh_2_4 delete @seq_ssh_2_4 { ip saddr } update @door_ssh_4 { ip saddr }",
		},
	}, {
		name: "sequence: a reset is a chain of one delete a rule",
		policy: func(b *irtest.B) {
			b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.UDP(8000), irtest.TCP(9000))
		},
		chain: "seq_ssh_reset_4",
		want: []string{
			"delete @seq_ssh_1_4 { ip saddr }",
			"delete @seq_ssh_2_4 { ip saddr }",
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
			"th dport 7000 tcp flags & (syn | ack) == syn ip saddr @rseq_ssh_1_4 delete @rseq_ssh_1_4 { ip saddr } jump close_ssh_4",
		},
	}, {
		name: "closing sequence: the deletes of several doors are a chain",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Door("ssh", 0, time.Minute, irtest.TCP(1700))
			b.CloseSeq("ssh", 2*time.Second, irtest.TCP(9000), irtest.TCP(7000))
		},
		chain: "close_ssh_4",
		want:  []string{"delete @door_ssh_4 { ip saddr }", "delete @door_ssh_2_4 { ip saddr }"},
	}, {
		name:   "per-source limit with a mask: a jump to its slots",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 24, 64, 0) },
		chain:  "svc_ssh",
		want:   []string{"ct state new jump lim_ssh", "ct state new accept"},
	}, {
		name:   "per-source limit with a mask: one slot per count and family, then the refusal",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 24, 64, 0) },
		chain:  "lim_ssh",
		want: []string{
			"meta nfproto ipv4 add @lim_ssh_1_4 { ip saddr and 255.255.255.0 limit rate 1/week burst 1 packets } return",
			"meta nfproto ipv4 add @lim_ssh_2_4 { ip saddr and 255.255.255.0 limit rate 1/week burst 1 packets } return",
			"meta nfproto ipv4 add @lim_ssh_3_4 { ip saddr and 255.255.255.0 limit rate 1/week burst 1 packets } return",
			"meta nfproto ipv6 add @lim_ssh_1_6 { ip6 saddr and ffff:ffff:ffff:ffff:: limit rate 1/week burst 1 packets } return",
			"meta nfproto ipv6 add @lim_ssh_3_6 { ip6 saddr and ffff:ffff:ffff:ffff:: limit rate 1/week burst 1 packets } return",
			"drop",
		},
	}, {
		name:   "global limit: slots keyed by ct state, shared by both families",
		policy: func(b *irtest.B) { b.Limit("https", 3, 20*time.Second, 0, 0, 0) },
		chain:  "lim_https",
		want: []string{
			"add @lim_https_1 { ct state limit rate 1/week burst 1 packets } return",
			"add @lim_https_3 { ct state limit rate 1/week burst 1 packets } return",
			"drop",
		},
	}, {
		name: "global limit of one family",
		policy: func(b *irtest.B) {
			b.Limit("https", 2, 20*time.Second, 0, 0, 0).Family = lang.IPv6
		},
		chain: "svc_https",
		want:  []string{"meta nfproto ipv6 ct state new jump lim_https"},
	}, {
		name:   "ban: checked first, added by the refusal",
		policy: func(b *irtest.B) { b.Limit("ssh", 5, time.Minute, 32, 128, 5*time.Minute) },
		chain:  "svc_ssh",
		want: []string{
			"meta nfproto ipv4 ct state new ip saddr @ban_ssh_4 drop",
			"ct state new jump lim_ssh",
		},
	}, {
		name:   "ban: the refusal goes to the ban chain",
		policy: func(b *irtest.B) { b.Limit("ssh", 5, time.Minute, 32, 128, 5*time.Minute) },
		chain:  "lim_ssh",
		want:   []string{"add @lim_ssh_5_6 { ip6 saddr limit rate 1/week burst 1 packets } return", "goto over_ssh"},
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
		want: []string{
			`th dport 1600 limit rate 10/minute burst 10 packets log prefix "kwl knock ssh: " level info`,
			`th dport 1600 drop`,
		},
	}, {
		name: "a log rate of its own",
		policy: func(b *irtest.B) {
			d := b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			d.Log = &lang.Log{Level: "info", Rate: 3, Per: 20 * time.Second}
		},
		chain: "knock",
		want:  []string{`th dport 1600 limit rate 9/minute burst 3 packets log prefix "kwl knock ssh: " level info`},
	}, {
		name: "a limit logs its refusals only, through the chain of its log",
		policy: func(b *irtest.B) {
			l := b.Limit("ssh", 3, time.Minute, 32, 128, 0)
			l.Log = &lang.Log{Level: "info"}
		},
		chain: "lim_ssh",
		want:  []string{"add @lim_ssh_3_6", `limit rate 10/minute burst 10 packets log prefix "kwl limit ssh: " level info`, "drop"},
	}, {
		name: "the ban chain logs after the ban is recorded",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			l := b.Limit("ssh", 3, time.Minute, 32, 128, time.Minute)
			l.Log = &lang.Log{Level: "info"}
		},
		chain: "over_ssh",
		want:  []string{"update @ban_ssh_4", `limit rate 10/minute burst 10 packets log prefix "kwl limit ssh: " level info`, "drop"},
	}, {
		name:   "limit: a TCP packet new to conntrack but no SYN goes past it",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 32, 128, 0) },
		chain:  "svc_ssh",
		want: []string{
			"meta l4proto tcp tcp flags & (syn | ack) != syn ct state new accept",
			"ct state new jump lim_ssh",
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
			"ct state new jump lim_ssh",
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
			// The counters (every accept, drop and reject of a
			// statement has one: TestCounters) are left out of the
			// matches.
			got := strings.ReplaceAll(chainText(rs, tc.chain), " counter ", " ")
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
				if decides && r.Origin.IsZero() && !strings.Contains(r.Comment, "established") {
					t.Errorf("%s: chain %s: rule without origin: %s", name, c.Name, ruleText(r))
				}
			}
		}
	}
}

// TestMilliseconds: nftables keeps timeouts in whole milliseconds, so it
// takes fractions of a second (for 1.5s) and refuses what is finer.
func TestMilliseconds(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // the error's "line:col: message" prefix, or "" for none
	}{
		{"fraction of a second", "knock 1600 opens ssh for 1.5s", ""},
		{"fractions everywhere", "knock 1600, 1601 within 0.25s opens ssh for 2.5m\nlimit ssh 3/1.5s per source ban 0.001s", ""},
		{"door lifetime", "knock 1600 opens ssh for 1.0005s", "1:1: nftables keeps timeouts in whole milliseconds: it cannot express the door's lifetime of 1.0005s"},
		{"sequence window", "knock 1600, 1601 within 1500us opens ssh for 60s", "1:1: nftables keeps timeouts in whole milliseconds: it cannot express the window between knocks of 1.5ms"},
		{"closing sequence", "knock 1600 opens ssh for 60s\nknock 1601, 1602 within 5s1ns closes ssh", "2:1: nftables keeps timeouts in whole milliseconds: it cannot express the window between knocks of 5.000000001s"},
		{"limit window", "limit ssh 3/60.0001s", "1:1: nftables keeps timeouts in whole milliseconds: it cannot express the limit's window of 1m0.0001s"},
		{"ban", "limit ssh 3/60s per source ban 10.5ms", "1:1: nftables keeps timeouts in whole milliseconds: it cannot express the ban of 10.5ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, diags := Lower(irtest.Load(t, tc.src))
			irtest.Refused(t, diags, tc.want, "L10", "")
			if tc.want == "" {
				for _, s := range rs.Table.Sets {
					if s.Timeout%time.Millisecond != 0 {
						t.Errorf("set %s: timeout %v", s.Name, s.Timeout)
					}
				}
			}
		})
	}
}

func TestGolden(t *testing.T) {
	for name, p := range irtest.Goldens(t, "../../examples", Name) {
		t.Run(name, func(t *testing.T) {
			rs, diags := Lower(p)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			irtest.Golden(t, filepath.Join("testdata", name+".nft"), mustRender(t, rs), *update)
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

// TestRulesStayBounded: no rule grows with a sequence's length, the
// doors of a service or a close's doors, so every rule stays within what
// the kernel takes (a rule deleting from 34 stage sets was refused with
// EFBIG). Package deploy/nftnl tests that the same ruleset converts to
// netlink.
func TestRulesStayBounded(t *testing.T) {
	pol, diags := lang.Load("big.kwl", polgen.Bounded())
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs, diags := Lower(pol)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	const most = 16
	for _, c := range rs.Table.Chains {
		for i, r := range c.Rules {
			if len(r.Exprs) > most {
				t.Errorf("chain %s rule %d has %d expressions, more than %d: %s", c.Name, i+1, len(r.Exprs), most, ruleText(r))
			}
		}
	}
}

// TestCounters: every rule that accepts, drops or rejects for a
// statement counts, just before its verdict; no other rule does.
func TestCounters(t *testing.T) {
	b := irtest.New("t.kwl")
	b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
	b.Limit("ssh", 3, time.Minute, 32, 64, 0)
	rs, diags := Lower(b.P)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	n := 0
	for _, c := range rs.Table.Chains {
		for _, r := range c.Rules {
			var counted bool
			for i, e := range r.Exprs {
				if _, ok := e.(*Counter); ok {
					counted = true
					if i != len(r.Exprs)-2 {
						t.Errorf("chain %s: a counter that is not just before the verdict: %v", c.Name, r.Exprs)
					}
				}
			}
			v, _ := r.Exprs[len(r.Exprs)-1].(*Verdict)
			decides := v != nil && (v.Kind == Accept || v.Kind == Drop || v.Kind == Reject || v.Kind == RejectTCPReset) && r.Origin.Pos.IsValid()
			if counted != decides {
				t.Errorf("chain %s: counter %v on a rule that decides %v: %v", c.Name, counted, decides, r.Exprs)
			}
			if counted {
				n++
			}
		}
	}
	if n == 0 {
		t.Error("no rule counts")
	}
}
