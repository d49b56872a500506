package iptables

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// chainText returns the rules of a chain of the family, one per line.
func chainText(f *Family, name string) string {
	var b strings.Builder
	for _, t := range f.Tables {
		for _, c := range t.Chains {
			if c.Name == name {
				for _, r := range c.Rules {
					b.WriteString(ruleText(r, f.IPv6) + "\n")
				}
			}
		}
	}
	return b.String()
}

func TestLowerStatements(t *testing.T) {
	tests := []struct {
		name   string
		policy func(b *irtest.B)
		v6     bool
		chain  string
		want   []string
		err    string // when set, Lower fails with an error holding it
	}{{
		name:   "single knock: --set, then drop (SSHKnock)",
		policy: func(b *irtest.B) { b.Door("ssh", 0, time.Minute, irtest.TCP(1600)) },
		chain:  "kwl-knock",
		want: []string{
			"-p tcp -m tcp --dport 1600 --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent --set --name kwl_door_ssh_4 --rsource",
			"-p tcp -m tcp --dport 1600 -m comment --comment \"knock ssh, line 1\" -j DROP",
		},
	}, {
		name:   "guard and accept with --rcheck --seconds",
		policy: func(b *irtest.B) { b.Door("ssh", 0, time.Minute, irtest.TCP(1600)) },
		chain:  "kwl-svc-ssh",
		want: []string{
			"--ctstate NEW -m recent ! --rcheck --seconds 60 --name kwl_door_ssh_4 --rsource -m comment --comment \"ssh is knocked: no open door, no entry\" -j DROP",
			"--ctstate NEW -m recent --rcheck --seconds 60 --name kwl_door_ssh_4 --rsource -m comment --comment \"knock ssh, line 1\" -j ACCEPT",
		},
	}, {
		name: "close ports --remove",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Close("ssh", irtest.TCP(1599), irtest.TCP(1601))
		},
		chain: "kwl-knock",
		want:  []string{"-m multiport --dports 1599,1601 -m tcp --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent --remove --name kwl_door_ssh_4"},
	}, {
		name:   "sequence: reset before advance",
		policy: func(b *irtest.B) { b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.TCP(8000)) },
		chain:  "kwl-knock",
		want: []string{
			"--dport 7000 --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent ! --rcheck --seconds 5 --name kwl_seq_ssh_1_4 --rsource -m comment --comment \"knock ssh, line 1\" -j kwl-seq-ssh-1",
			"--dport 8000 --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent ! --rcheck --seconds 5 --name kwl_seq_ssh_1_4 --rsource -m comment --comment \"knock ssh, line 1\" -j kwl-seq-ssh-reset",
			"--dport 8000 --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent --rcheck --seconds 5 --name kwl_seq_ssh_1_4 --rsource -m comment --comment \"knock ssh, line 1\" -j kwl-seq-ssh-2",
		},
	}, {
		name:   "sequence: the last knock sets the door",
		policy: func(b *irtest.B) { b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.TCP(8000)) },
		chain:  "kwl-seq-ssh-2",
		want:   []string{"-m recent --remove --name kwl_seq_ssh_1_4", "-m recent --set --name kwl_door_ssh_4"},
	}, {
		name: "sequence: the first knock restarts, unless it repeats the last counted one",
		policy: func(b *irtest.B) {
			b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.TCP(8000), irtest.TCP(9000))
		},
		chain: "kwl-seq-ssh-1",
		want:  []string{"-j kwl-seq-ssh-reset", "-m recent --set --name kwl_seq_ssh_1_4"},
	}, {
		name: "sequence: a repeated middle knock returns before the reset",
		policy: func(b *irtest.B) {
			b.Door("ssh", 5*time.Second, time.Minute, irtest.TCP(7000), irtest.TCP(8000), irtest.TCP(9000))
		},
		chain: "kwl-seq-ssh-2-again",
		want:  []string{"-m recent --rcheck --seconds 5 --name kwl_seq_ssh_2_4 --rsource -m comment --comment \"knock ssh, line 1\" -j RETURN", "-j kwl-seq-ssh-reset"},
	}, {
		name:   "per-source limit: Shorewall's Limit with a mask",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 24, 64, 0) },
		chain:  "kwl-svc-ssh",
		want: []string{
			"-p tcp -m tcp ! --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m comment --comment \"limit ssh, line 1\" -j ACCEPT",
			"--ctstate NEW -m recent --rcheck --seconds 60 --hitcount 3 --name kwl_lim_ssh_m24_4 --mask 255.255.255.0 --rsource -m comment --comment \"limit ssh, line 1\" -j DROP",
			"--ctstate NEW -m recent --set --name kwl_lim_ssh_m24_4 --mask 255.255.255.0 --rsource",
			"--ctstate NEW -m comment --comment \"limit ssh, line 1\" -j ACCEPT",
		},
	}, {
		name: "limit on a knocked service: not a SYN goes to the open door",
		policy: func(b *irtest.B) {
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
			b.Limit("ssh", 3, time.Minute, 32, 128, 0)
		},
		chain: "kwl-svc-ssh",
		want: []string{
			"! --rcheck --seconds 60 --name kwl_door_ssh_4 --rsource -m comment --comment \"ssh is knocked: no open door, no entry\" -j DROP",
			"-p tcp -m tcp ! --tcp-flags SYN,ACK SYN -m conntrack --ctstate NEW -m recent --rcheck --seconds 60 --name kwl_door_ssh_4 --rsource -m comment --comment \"knock ssh, line 1\" -j ACCEPT",
			"--ctstate NEW -m recent --set --name kwl_lim_ssh_4",
			"--ctstate NEW -m recent --rcheck --seconds 60 --name kwl_door_ssh_4 --rsource -m comment --comment \"knock ssh, line 1\" -j ACCEPT",
		},
	}, {
		name:   "per-source limit, IPv6 mask",
		policy: func(b *irtest.B) { b.Limit("ssh", 3, time.Minute, 24, 64, 0) },
		v6:     true,
		chain:  "kwl-svc-ssh",
		want:   []string{"--name kwl_lim_ssh_m64_6 --mask ffff:ffff:ffff:ffff:: --rsource"},
	}, {
		name: "global limit: one entry for every source of the family",
		policy: func(b *irtest.B) {
			l := b.Limit("https", 3, 20*time.Second, 0, 0, 0)
			l.Family = lang.IPv4
		},
		chain: "kwl-svc-https",
		want: []string{
			"-m recent --rcheck --seconds 20 --hitcount 3 --name kwl_lim_https_shared_4 --mask 0.0.0.0 --rsource -m comment --comment \"limit https, line 1\" -j DROP",
			"-m recent --set --name kwl_lim_https_shared_4 --mask 0.0.0.0 --rsource",
		},
	}, {
		name:   "ban: checked first, set over the limit",
		policy: func(b *irtest.B) { b.Limit("ssh", 5, time.Minute, 32, 128, 5*time.Minute) },
		chain:  "kwl-svc-ssh",
		want: []string{
			"--ctstate NEW -m recent --rcheck --seconds 300 --name kwl_ban_ssh_4 --rsource -m comment --comment \"ban ssh, line 1\" -j DROP",
			"--rcheck --seconds 60 --hitcount 5 --name kwl_lim_ssh_4 --rsource -m comment --comment \"limit ssh, line 1\" -j kwl-over-ssh",
			"--set --name kwl_lim_ssh_4 --rsource",
		},
	}, {
		name: "allow from sources of the family",
		policy: func(b *irtest.B) {
			b.Allow("ssh", "192.168.0.0/16", "fd00::/8")
			b.Door("ssh", 0, time.Minute, irtest.TCP(1600))
		},
		v6:    true,
		chain: "kwl-svc-ssh",
		want:  []string{"-s fd00::/8 -m comment --comment \"allow ssh, line 1\" -j ACCEPT"},
	}, {
		name: "forwarded: DNAT of local destinations",
		policy: func(b *irtest.B) {
			b.Service("inside", "192.168.1.5", irtest.TCP(22))
			b.Door("inside", 0, time.Minute, irtest.TCP(1600))
		},
		chain: "kwl-prerouting",
		want:  []string{"-p tcp -m tcp --dport 22 -m addrtype --dst-type LOCAL -m comment --comment \"service inside forwarded to 192.168.1.5\" -j DNAT --to-destination 192.168.1.5"},
	}, {
		name: "forwarded: original destination port",
		policy: func(b *irtest.B) {
			b.Service("inside", "192.168.1.5", irtest.TCP(22))
			b.Door("inside", 0, time.Minute, irtest.TCP(1600))
		},
		chain: "kwl-forward",
		want:  []string{"-d 192.168.1.5 -p tcp -m conntrack --ctorigdstport 22 -m comment --comment \"service inside\" -j kwl-svc-inside"},
	}, {
		name: "logging a stateful rule goes through a chain",
		policy: func(b *irtest.B) {
			l := b.Limit("ssh", 3, time.Minute, 32, 128, 0)
			l.Log = &lang.Log{Level: "info"}
		},
		chain: "kwl-svc-ssh",
		want: []string{
			"--rcheck --seconds 60 --hitcount 3 --name kwl_lim_ssh_4 --rsource -m limit --limit 10/minute --limit-burst 10 -m comment --comment \"limit ssh, line 1\" -j LOG --log-prefix \"kwl limit ssh: \" --log-level info",
			"--rcheck --seconds 60 --hitcount 3 --name kwl_lim_ssh_4 --rsource -m comment --comment \"limit ssh, line 1\" -j DROP",
		},
	}, {
		name:   "a global limit over both families is refused",
		policy: func(b *irtest.B) { b.Limit("https", 3, 20*time.Second, 0, 0, 0) },
		err:    "iptables cannot share one limit between IPv4 and IPv6",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := irtest.New("t.kwl")
			tc.policy(b)
			rs, diags := Lower(b.P)
			if tc.err != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.err) {
					t.Fatalf("want an error %q, got %v", tc.err, diags)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			f := rs.V4
			if tc.v6 {
				f = rs.V6
			}
			got := chainText(f, tc.chain)
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

func TestNames(t *testing.T) {
	long := strings.Repeat("x", 300)
	if n := shorten("kwl_door_"+long, MaxListName); len(n) != MaxListName {
		t.Errorf("list name of %d characters", len(n))
	}
	if a, b := chainName("svc", long+"a"), chainName("svc", long+"b"); a == b || len(a) > MaxChainName {
		t.Errorf("chain names %q, %q", a, b)
	}
}

func TestWarnings(t *testing.T) {
	b := irtest.New("w.kwl")
	b.Door("ssh", 1500*time.Millisecond, time.Minute, irtest.TCP(7000), irtest.TCP(8000))
	b.Close("ssh", irtest.TCP(6999))
	b.Limit("ssh", 30, time.Minute, 32, 64, 0)
	b.Limit("http", 70, time.Minute, 32, 64, 0)
	_, diags := Lower(b.P)
	codes := map[string]int{}
	for _, d := range diags {
		codes[string(d.Code)+"/"+d.Severity.String()]++
	}
	for code, n := range map[string]int{"L10/error": 1, "L13/warning": 0, "L07/note": 3} {
		if codes[code] != n {
			t.Errorf("%s: %d, want %d\n%v", code, codes[code], n, diags)
		}
	}
}

// TestWholeSeconds: xt_recent counts whole seconds, so a door lifetime,
// a sequence's window, a per-source limit's window or a ban with a
// fraction of a second is an error at its statement, never a rounding.
func TestWholeSeconds(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // the error's "line:col: message" prefix, or "" for none
	}{
		{"door lifetime", "knock 1600 opens ssh for 1.5s", "1:1: the recent match counts whole seconds: iptables cannot express the door's lifetime of 1.5s"},
		{"sequence window", "knock 1600, 1601 within 1500ms opens ssh for 60s", "1:1: the recent match counts whole seconds: iptables cannot express the window between knocks of 1.5s"},
		{"closing sequence", "knock 1600 opens ssh for 60s\nknock 1601, 1602 within 0.5s closes ssh", "2:1: the recent match counts whole seconds: iptables cannot express the window between knocks of 500ms"},
		{"limit window", "limit ssh 3/2.5s per source", "1:1: the recent match counts whole seconds: iptables cannot express the limit's window of 2.5s"},
		{"ban", "limit ssh 3/60s per source ban 90.001s", "1:1: the recent match counts whole seconds: iptables cannot express the ban of 1m30.001s"},
		{"whole seconds", "knock 1600, 1601 within 2000ms opens ssh for 1.5m", ""},
		{"global limit", "limit ssh 3/1.5s family ipv4", "1:1: the recent match counts whole seconds: iptables cannot express the limit's window of 1.5s"},
		{"global limit, whole seconds", "limit ssh 3/2s family ipv4", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := Lower(irtest.Load(t, tc.src))
			irtest.Refused(t, diags, tc.want, "L10", "--backend nft")
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
			v4, v6, err := rs.Render()
			if err != nil {
				t.Fatal(err)
			}
			irtest.Golden(t, filepath.Join("testdata", name+".rules"), v4, *update)
			irtest.Golden(t, filepath.Join("testdata", name+".rules6"), v6, *update)
		})
	}
}

// needRoot skips a test that needs root, unless KWL_KERNEL_TESTS=1 makes
// the skip a failure.
func needRoot(t *testing.T, tools ...string) { t.Helper(); netns.NeedRoot(t, tools...) }

// newNS creates a private network namespace, removed when the test ends.
func newNS(t *testing.T) string { t.Helper(); return netns.ForTest(t, "kwlc-ipt").Name }

func restore(ns, tool, file string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, tool}, append(args, file)...)...)
	return cmd.CombinedOutput()
}

// TestGoldenLoads checks every golden file with --test, then loads each
// into a fresh private namespace for real, then reloads its chains
// (RenderChains' form) and checks that the jump from INPUT is still there
// once.
func TestGoldenLoads(t *testing.T) {
	needRoot(t, "iptables-restore", "ip6tables-restore")
	for _, g := range []struct{ glob, tool, save string }{
		{"testdata/*.rules", "iptables-restore", "iptables-save"},
		{"testdata/*.rules6", "ip6tables-restore", "ip6tables-save"},
	} {
		files, _ := filepath.Glob(g.glob)
		if len(files) == 0 {
			t.Fatalf("no %s", g.glob)
		}
		for _, f := range files {
			ns := newNS(t)
			if out, err := restore(ns, g.tool, f, "--test", "--noflush"); err != nil {
				t.Errorf("%s --test %s: %v\n%s", g.tool, f, err, out)
				continue
			}
			if out, err := restore(ns, g.tool, f, "--noflush"); err != nil {
				t.Errorf("%s %s: %v\n%s", g.tool, f, err, out)
				continue
			}
			text, _ := os.ReadFile(f)
			var body strings.Builder
			for _, line := range strings.Split(string(text), "\n") {
				if !strings.HasPrefix(line, "-I ") {
					body.WriteString(line + "\n")
				}
			}
			tmp := filepath.Join(t.TempDir(), "chains")
			os.WriteFile(tmp, []byte(body.String()), 0o644)
			if out, err := restore(ns, g.tool, tmp, "--noflush"); err != nil {
				t.Errorf("%s reload %s: %v\n%s", g.tool, f, err, out)
			}
			out, _ := exec.Command("ip", "netns", "exec", ns, g.save).CombinedOutput()
			if n := strings.Count(string(out), "-A INPUT -j kwl-input"); n != 1 {
				t.Errorf("%s: %d jumps from INPUT after a reload:\n%s", f, n, out)
			}
		}
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
	for _, ch := range []string{"kwl-knock", "kwl-svc-ntp"} {
		if got := chainText(rs.V4, ch); got == "" || strings.Contains(got, "--tcp-flags") {
			t.Errorf("chain %s:\n%s", ch, got)
		}
	}
}
