//go:build linux

package deploy

import (
	"context"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// needRoot skips a kernel test when not root, unless KWL_KERNEL_TESTS=1
// asks for kernel tests to fail instead.
func needRoot(t testing.TB) { t.Helper(); netns.NeedRoot(t) }

// newNS creates a private network namespace named kwld-..., removed when
// the test ends.
func newNS(t testing.TB, role string) *netns.NS {
	t.Helper()
	needRoot(t)
	ns, err := netns.New(netns.Group("kwld") + "-" + role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

func nftList(t testing.TB, ns *netns.NS, args ...string) string {
	t.Helper()
	out, err := ns.Run("nft", append([]string{"list"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

var handleRE = regexp.MustCompile(` # handle \d+`)

// markRE is the comment of kwl's mark, which nft -f of a ruleset's text
// does not write.
var markRE = regexp.MustCompile(`(?m)^\tcomment "kwl( policy [^"]*)?"\n`)

func normalize(s string) string {
	return markRE.ReplaceAllString(handleRE.ReplaceAllString(s, ""), "")
}

// pos is the Ref of a statement on line of t.kwl, one to a line.
func pos(line int) lang.Ref {
	return lang.Ref{ID: line, Pos: lang.Pos{File: "t.kwl", Line: line, Col: 1}}
}

// sampleRuleset uses every expression and field kwl's data model has.
func sampleRuleset() *nft.Ruleset {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	a := func(s string) netip.Prefix { x := netip.MustParseAddr(s); return netip.PrefixFrom(x, x.BitLen()) }
	sad := nft.Key{Field: nft.IPSaddr}
	sad6 := nft.Key{Field: nft.IP6Saddr}
	return &nft.Ruleset{Table: &nft.Table{
		Family: "inet", Name: "kwl",
		Sets: []*nft.Set{
			{Name: "door_ssh_4", Type: nft.IPv4Addr, Timeout: 60 * time.Second, Origin: pos(2), Comment: "doors to ssh"},
			{Name: "door_ssh_6", Type: nft.IPv6Addr, Timeout: 60 * time.Second, Size: 1000, Origin: pos(2)},
			{Name: "lim_ssh_4", Type: nft.IPv4Addr, Timeout: 60 * time.Second, Origin: pos(4)},
			{Name: "ban_ssh_6", Type: nft.IPv6Addr, Timeout: 300 * time.Second, Origin: pos(4), Comment: "ban for ssh"},
			{Name: "ban_ssh_4", Type: nft.IPv4Addr, Timeout: 300 * time.Second, Origin: pos(4)},
		},
		Chains: []*nft.Chain{
			{Name: "input", Type: "filter", Hook: nft.Input, Priority: 0, Policy: nft.Accept, Rules: []*nft.Rule{
				{Exprs: []nft.Expr{&nft.Match{Field: nft.CtState, Values: []any{"established", "related"}}, &nft.Verdict{Kind: nft.Accept}}},
				{Origin: pos(3), Comment: "allow", Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}},
					&nft.Match{Field: nft.IPSaddr, Values: []any{p("192.168.0.0/16"), p("10.0.0.0/8"), a("1.2.3.4")}},
					&nft.Log{Level: "info", Prefix: "kwl allow ssh: "}, &nft.Verdict{Kind: nft.Accept}}},
				{Origin: pos(3), Exprs: []nft.Expr{
					&nft.Match{Field: nft.IP6Saddr, Values: []any{p("fd00::/8")}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22), uint16(80)}},
					&nft.Counter{}, &nft.Verdict{Kind: nft.Accept}}},
				{Origin: pos(2), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(1600)}},
					&nft.Match{Field: nft.CtState, Values: []any{"new"}},
					&nft.Dynset{Op: nft.Update, Set: "door_ssh_4", Key: sad, Timeout: 60 * time.Second}, &nft.Verdict{Kind: nft.Drop}}},
				{Origin: pos(2), Exprs: []nft.Expr{
					&nft.Match{Field: nft.NFProto, Values: []any{"ipv6"}},
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(1599), uint16(1601)}},
					&nft.Dynset{Op: nft.Delete, Set: "door_ssh_6", Key: sad6}, &nft.Verdict{Kind: nft.Drop}}},
				{Origin: pos(4), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}},
					&nft.Lookup{Set: "ban_ssh_6", Key: sad6}, &nft.Verdict{Kind: nft.Drop}}},
				{Origin: pos(4), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}},
					&nft.Match{Field: nft.CtState, Values: []any{"new"}},
					&nft.Dynset{Op: nft.Update, Set: "lim_ssh_4", Key: nft.Key{Field: nft.IPSaddr, Prefix: 24},
						Limit: &nft.Limit{Rate: 3, Unit: time.Minute, Burst: 3, Over: true}},
					&nft.Dynset{Op: nft.Add, Set: "ban_ssh_4", Key: sad, Timeout: 300 * time.Second},
					&nft.Log{Level: "warn"}, &nft.Verdict{Kind: nft.Drop}}},
				{Origin: pos(5), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}},
					&nft.Match{Field: nft.IPSaddr, Values: []any{p("172.16.0.0/12")}},
					&nft.Lookup{Set: "door_ssh_4", Key: sad, Neg: true}, &nft.Verdict{Kind: nft.Drop}}},
				{Origin: pos(6), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP, lang.UDP}, Neg: true}, &nft.Match{Field: nft.CtState, Values: []any{"new"}, Neg: true},
					&nft.Limit{Rate: 100, Unit: time.Second, Over: true}, &nft.Verdict{Kind: nft.Drop}}},
				{Exprs: []nft.Expr{&nft.Match{Field: nft.IP6Saddr, Values: []any{a("2001:db8::1"), a("2001:db8::2")}}, &nft.Verdict{Kind: nft.Jump, Chain: "rej"}}},
			}},
			{Name: "prerouting", Type: "nat", Hook: nft.Prerouting, Priority: -100, Policy: nft.Accept, Rules: []*nft.Rule{
				{Origin: pos(7), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}},
					&nft.Match{Field: nft.IPDaddr, Values: []any{a("203.0.113.1")}},
					&nft.NAT{Addr: netip.MustParseAddr("192.168.1.5")}}},
				{Origin: pos(7), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(2222)}},
					&nft.NAT{Addr: netip.MustParseAddr("192.168.1.5"), Port: 22}}},
			}},
			{Name: "forward_kwl", Type: "filter", Hook: nft.Forward, Priority: 0, Policy: nft.Accept, Rules: []*nft.Rule{
				{Origin: pos(7), Exprs: []nft.Expr{
					&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}},
					&nft.Match{Field: nft.CtStatus, Values: []any{"dnat"}},
					&nft.Match{Field: nft.CtOrigDport, Values: []any{uint16(22)}},
					&nft.Match{Field: nft.CtOrigIPDaddr, Values: []any{a("192.168.1.5")}},
					&nft.Verdict{Kind: nft.Accept}}},
			}},
			{Name: "rej", Rules: []*nft.Rule{{Exprs: []nft.Expr{&nft.Verdict{Kind: nft.Reject}}}}},
		},
	}}
}

// sampleText is sampleRuleset as nft -f input, written by hand.
const sampleText = `table inet kwl {
	set door_ssh_4 { type ipv4_addr; flags dynamic,timeout; timeout 60s; comment "doors to ssh"; }
	set door_ssh_6 { type ipv6_addr; size 1000; flags dynamic,timeout; timeout 60s; }
	set lim_ssh_4 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }
	set ban_ssh_6 { type ipv6_addr; flags dynamic,timeout; timeout 300s; comment "ban for ssh"; }
	set ban_ssh_4 { type ipv4_addr; flags dynamic,timeout; timeout 300s; }
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established,related accept
		meta l4proto tcp th dport 22 ip saddr { 192.168.0.0/16, 10.0.0.0/8, 1.2.3.4 } log prefix "kwl allow ssh: " level info accept comment "allow"
		ip6 saddr fd00::/8 th dport { 22, 80 } counter accept
		meta l4proto tcp th dport 1600 ct state new update @door_ssh_4 { ip saddr timeout 60s } drop
		meta nfproto ipv6 meta l4proto tcp th dport { 1599, 1601 } delete @door_ssh_6 { ip6 saddr } drop
		meta l4proto tcp th dport 22 ip6 saddr @ban_ssh_6 drop
		meta l4proto tcp th dport 22 ct state new update @lim_ssh_4 { ip saddr and 255.255.255.0 limit rate over 3/minute burst 3 packets } add @ban_ssh_4 { ip saddr timeout 300s } log level warn drop
		meta l4proto tcp th dport 22 ip saddr 172.16.0.0/12 ip saddr != @door_ssh_4 drop
		meta l4proto != { tcp, udp } ct state != new limit rate over 100/second drop
		ip6 saddr { 2001:db8::1, 2001:db8::2 } jump rej
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		meta l4proto tcp th dport 22 ip daddr 203.0.113.1 dnat ip to 192.168.1.5
		meta l4proto tcp th dport 2222 dnat ip to 192.168.1.5:22
	}
	chain forward_kwl {
		type filter hook forward priority 0; policy accept;
		meta l4proto tcp ct status dnat ct original proto-dst 22 ct original ip daddr 192.168.1.5 accept
	}
	chain rej {
		reject
	}
}
`

// TestNetlinkMatchesNftText loads the same ruleset over netlink and with
// nft -f into two namespaces and compares what nft lists.
func TestNetlinkMatchesNftText(t *testing.T) {
	a, b := newNS(t, "nl"), newNS(t, "txt")
	mustInput(t, b, []byte(sampleText), "nft", "-f", "-")
	tg, err := openTarget(a.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	n, err := nftnl.Convert(sampleRuleset())
	if err != nil {
		t.Fatal(err)
	}
	bt := nftnl.NewBatch()
	if err := bt.AddRuleset(n); err != nil {
		t.Fatal(err)
	}
	if err := tg.send(bt); err != nil {
		t.Fatal(err)
	}
	got, want := normalize(nftList(t, a, "table", "inet", "kwl")), normalize(nftList(t, b, "table", "inet", "kwl"))
	if got != want {
		t.Errorf("netlink load differs from nft -f:\n--- netlink\n%s\n--- nft -f\n%s", got, want)
	}
	// The bytecode too, which nft list may print alike for different code.
	gotd, _ := a.Run("nft", "--debug=netlink", "list", "table", "inet", "kwl")
	wantd, _ := b.Run("nft", "--debug=netlink", "list", "table", "inet", "kwl")
	if g, w := stripDebug(string(gotd)), stripDebug(string(wantd)); g != w || !strings.Contains(g, "dynset update") {
		t.Errorf("netlink bytecode differs from nft -f:\n--- netlink\n%s\n--- nft -f\n%s", g, w)
	}
}

var setNumRE = regexp.MustCompile(`__set\d+`)

// stripDebug normalizes nft --debug=netlink output: anonymous set
// numbers, and the order of a hash set's elements, which follows the
// hash seed of each set.
func stripDebug(s string) string {
	var out, run []string
	flush := func() {
		sort.Strings(run)
		out = append(out, run...)
		run = nil
	}
	for _, l := range strings.Split(s, "\n") {
		l = setNumRE.ReplaceAllString(l, "__set")
		if strings.HasPrefix(strings.TrimSpace(l), "element ") {
			run = append(run, l)
			continue
		}
		flush()
		out = append(out, l)
	}
	flush()
	return normalize(strings.Join(out, "\n"))
}

// must runs name with args in ns and fails the test if it fails.
func must(t testing.TB, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// mustInput is must with stdin as the command's standard input.
func mustInput(t testing.TB, ns *netns.NS, stdin []byte, name string, args ...string) string {
	t.Helper()
	out, err := ns.RunInput(stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// mustDeploy loads rs with o and fails the test if that fails.
func mustDeploy(t testing.TB, o Options, rs *nft.Ruleset) *Result {
	t.Helper()
	res, err := Apply(context.Background(), o, rs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// masked is nftList, normalized, with the time each element has left
// masked, so that listings made seconds apart compare equal.
func masked(t testing.TB, ns *netns.NS, args ...string) string {
	t.Helper()
	return expiresRE.ReplaceAllString(normalize(nftList(t, ns, args...)), "expires X")
}
