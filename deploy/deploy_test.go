//go:build linux

package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

func opts(t testing.TB, ns *netns.NS) Options {
	return Options{NetNS: ns.Name, StateDir: t.TempDir()}
}

// modified is sampleRuleset with one more allow rule and the IPv6 door
// set gone.
func modified() *nft.Ruleset {
	rs := sampleRuleset()
	in := rs.Table.Chains[0]
	in.Rules = append(in.Rules[:1:1], append([]*nft.Rule{{Origin: pos(9), Exprs: []nft.Expr{
		&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(443)}},
		&nft.Verdict{Kind: nft.Accept}}}}, in.Rules[1:]...)...)
	var sets []*nft.Set
	for _, s := range rs.Table.Sets {
		if s.Name != "door_ssh_6" {
			sets = append(sets, s)
		}
	}
	rs.Table.Sets = sets
	var rules []*nft.Rule
	for _, r := range in.Rules {
		uses := false
		for _, e := range r.Exprs {
			if d, ok := e.(*nft.Dynset); ok && d.Set == "door_ssh_6" {
				uses = true
			}
		}
		if !uses {
			rules = append(rules, r)
		}
	}
	in.Rules = rules
	return rs
}

const foreign = `table inet filter {
	set blocked { type ipv4_addr; flags timeout; elements = { 192.0.2.7 timeout 1h } }
	chain input { type filter hook input priority 10; policy accept;
		ip saddr @blocked counter drop
		tcp dport 8080 counter accept comment "foreign rule"
	}
}
table ip nat {
	chain post { type nat hook postrouting priority 100; policy accept; oifname "eth9" masquerade; }
}
`

// listOthers lists every table but kwl's, without the remaining times of
// elements (which move on).
func listOthers(t testing.TB, ns *netns.NS) string {
	out := nftList(t, ns, "ruleset")
	i := strings.Index(out, "table inet kwl {")
	if i >= 0 {
		j := strings.Index(out[i:], "\n}\n")
		out = out[:i] + out[i+j+3:]
	}
	return expiresRE.ReplaceAllString(out, "expires X")
}

var expiresRE = regexp.MustCompile(`expires [0-9hms]+`)

func TestForeignTablesUntouched(t *testing.T) {
	ns := newNS(t, "foreign")
	mustInput(t, ns, []byte(foreign), "nft", "-f", "-")
	before := listOthers(t, ns)
	ctx := context.Background()
	o := opts(t, ns)
	for i, rs := range []*nft.Ruleset{sampleRuleset(), modified(), sampleRuleset()} {
		if _, err := Apply(ctx, o, rs); err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if after := listOthers(t, ns); after != before {
			t.Fatalf("deploy %d changed other tables:\n--- before\n%s\n--- after\n%s", i, before, after)
		}
	}
	had, err := Undeploy(ctx, o)
	if err != nil || !had {
		t.Fatalf("undeploy: %v %v", had, err)
	}
	if after := listOthers(t, ns); after != before {
		t.Fatalf("undeploy changed other tables:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if out, _ := ns.Run("nft", "list", "tables"); strings.Contains(string(out), "kwl") {
		t.Fatalf("kwl table left after undeploy: %s", out)
	}
}

// expiry returns the remaining life of elem in set, as nft lists it.
func expiry(t testing.TB, ns *netns.NS, set, elem string) (time.Duration, bool) {
	t.Helper()
	out, err := ns.Run("nft", "list", "set", "inet", "kwl", set)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(elem) + `(?: timeout [0-9hms]+)? expires ([0-9hms]+)`).FindStringSubmatch(string(out))
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return d, true
}

func TestRedeployKeepsState(t *testing.T) {
	ns := newNS(t, "state")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	// A door opened 20 s ago (as a knock's update does) and a ban.
	must(t, ns, "nft", "add", "element", "inet", "kwl", "door_ssh_4", "{ 198.51.100.10 timeout 60s expires 40s }")
	must(t, ns, "nft", "add", "element", "inet", "kwl", "ban_ssh_6", "{ 2001:db8::66 }")
	time.Sleep(1100 * time.Millisecond)
	before, _ := expiry(t, ns, "door_ssh_4", "198.51.100.10")
	res, err := Apply(ctx, o, modified())
	if err != nil {
		t.Fatal(err)
	}
	after, ok := expiry(t, ns, "door_ssh_4", "198.51.100.10")
	if !ok {
		t.Fatalf("door lost by the redeploy:\n%s", nftList(t, ns, "table", "inet", "kwl"))
	}
	if after > before || after < before-2*time.Second {
		t.Errorf("door expires in %v after the redeploy, %v before it", after, before)
	}
	if _, ok := expiry(t, ns, "ban_ssh_6", "2001:db8::66"); !ok {
		t.Errorf("ban lost by the redeploy")
	}
	if res.Kept["door_ssh_4"] != 1 || res.Kept["ban_ssh_6"] != 1 {
		t.Errorf("kept %v", res.Kept)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	ns := newNS(t, "dry")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	before := normalize(nftList(t, ns, "ruleset"))
	o.DryRun = true
	res, err := Apply(ctx, o, sampleRuleset())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changes.Empty() || res.Pending() {
		var b strings.Builder
		res.Changes.Write(&b)
		t.Errorf("dry run of the loaded ruleset shows changes:\n%s", b.String())
	}
	res, err = Apply(ctx, o, modified())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res.Changes.Write(&b)
	out := b.String()
	if !res.Pending() {
		t.Errorf("dry run of a changed ruleset: nothing pending")
	}
	// A new rule in nft syntax, after its statement's file:line.
	for _, want := range []string{"- set door_ssh_6", "+ rule in chain input, t.kwl:9: meta l4proto tcp th dport 443 accept", "- rule in chain input: ", "plan: "} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if after := normalize(nftList(t, ns, "ruleset")); after != before {
		t.Errorf("dry run changed the kernel:\n%s\n---\n%s", before, after)
	}
}

func TestRejectedBatchKeepsPrevious(t *testing.T) {
	ns := newNS(t, "reject")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	must(t, ns, "nft", "add", "element", "inet", "kwl", "door_ssh_4", "{ 198.51.100.10 timeout 60s expires 40s }")
	before := masked(t, ns, "ruleset")
	bad := modified()
	in := bad.Table.Chains[0]
	in.Rules = append(in.Rules, &nft.Rule{Origin: pos(42), Exprs: []nft.Expr{&nft.Verdict{Kind: nft.Jump, Chain: "no_such_chain"}}})
	_, err := Apply(ctx, o, bad)
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("want a BatchError, got %v", err)
	}
	if got := be.Errs[0].Note.Origin; got != pos(42) {
		t.Errorf("error blames %v, want %v: %v", got, pos(42), err)
	}
	if !strings.Contains(err.Error(), "t.kwl:42:1") {
		t.Errorf("error does not name the statement: %v", err)
	}
	after := masked(t, ns, "ruleset")
	if after != before {
		t.Errorf("a refused batch changed the kernel:\n%s\n---\n%s", before, after)
	}
	// The test hook: a message the kernel refuses that is no rule.
	o.inject = func(b *nftnl.Batch) {
		key, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: []byte{192, 0, 2, 1}}})
		ms, err := elemMsgs(nftables.TableFamilyINet, "kwl", "no_such_set",
			[][]netlink.Attribute{{{Type: unix.NFTA_SET_ELEM_KEY | unix.NLA_F_NESTED, Data: key}}})
		if err != nil {
			t.Fatal(err)
		}
		b.Msgs = append(b.Msgs, ms...)
		b.Notes = append(b.Notes, nftnl.Note{What: "injected element of a missing set", Origin: pos(77)})
	}
	_, err = Apply(ctx, o, sampleRuleset())
	if err == nil {
		t.Fatal("injected failure was accepted")
	}
	if !errors.As(err, &be) || be.Errs[0].Note.Origin != pos(77) {
		t.Errorf("injected failure reported as %v", err)
	}
	if after := masked(t, ns, "ruleset"); after != before {
		t.Errorf("a refused batch changed the kernel:\n%s\n---\n%s", before, after)
	}
	if _, ok := expiry(t, ns, "door_ssh_4", "198.51.100.10"); !ok {
		t.Errorf("door lost")
	}
}

func TestConfirm(t *testing.T) {
	ns := newNS(t, "confirm")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	must(t, ns, "nft", "add", "element", "inet", "kwl", "door_ssh_6", "{ 2001:db8::10 timeout 60s expires 50s }")
	before := masked(t, ns, "table", "inet", "kwl")
	t.Run("timeout", func(t *testing.T) {
		o := o
		o.Confirm = 2 * time.Second
		start := time.Now()
		res, err := Apply(ctx, o, modified())
		if !errors.Is(err, ErrRolledBack) || !res.RolledBack {
			t.Fatalf("want rollback, got %v", err)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("rolled back after %v", d)
		}
		after := masked(t, ns, "table", "inet", "kwl")
		if after != before {
			t.Errorf("rollback did not restore the ruleset:\n%s\n---\n%s", before, after)
		}
		// door_ssh_6 does not exist in the new ruleset: its element comes
		// back from the snapshot, aged by the time it was away.
		left, ok := expiry(t, ns, "door_ssh_6", "2001:db8::10")
		if !ok || left > 48*time.Second || left < 44*time.Second {
			t.Errorf("door after rollback: %v %v", left, ok)
		}
	})
	t.Run("confirmed", func(t *testing.T) {
		o := o
		o.Confirm = 5 * time.Second
		ch := make(chan struct{}, 1)
		o.Confirmed = ch
		go func() { time.Sleep(300 * time.Millisecond); ch <- struct{}{} }()
		res, err := Apply(ctx, o, modified())
		if err != nil || !res.Confirmed {
			t.Fatalf("confirmed deploy: %v", err)
		}
		o.DryRun, o.Confirm = true, 0
		res, err = Apply(ctx, o, modified())
		if err != nil || !res.Changes.Empty() {
			t.Fatalf("the new ruleset is not what is loaded: %v", err)
		}
	})
}

func TestLock(t *testing.T) {
	ns := newNS(t, "lock")
	o := Options{StateDir: t.TempDir(), NetNS: ns.Name}
	release, err := lock(&o)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := lock(&o); err == nil || !strings.Contains(err.Error(), "another kwl deploy is running") {
		t.Fatalf("second lock: %v", err)
	}
}

// generated returns a ruleset of n allow statements (one rule each, from
// distinct sources to distinct ports) and its nft -f text.
func generated(n int) (*nft.Ruleset, string) {
	var b strings.Builder
	b.WriteString("table inet kwl {\n\tset door4 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n")
	ch := &nft.Chain{Name: "input", Type: "filter", Hook: nft.Input, Policy: nft.Accept}
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		port := uint16(1000 + i%50000)
		ch.Rules = append(ch.Rules, &nft.Rule{Origin: lang.Ref{ID: i + 1, Pos: lang.Pos{File: "gen.kwl", Line: i + 1, Col: 1}}, Exprs: []nft.Expr{
			&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}},
			&nft.Match{Field: nft.THDport, Values: []any{port}},
			&nft.Match{Field: nft.IPSaddr, Values: []any{netip.PrefixFrom(a, 32)}},
			&nft.Lookup{Set: "door4", Key: nft.Key{Field: nft.IPSaddr}},
			&nft.Verdict{Kind: nft.Accept},
		}})
		fmt.Fprintf(&b, "\t\tmeta l4proto tcp th dport %d ip saddr %s ip saddr @door4 accept\n", port, a)
	}
	b.WriteString("\t}\n}\n")
	return &nft.Ruleset{Table: &nft.Table{Family: "inet", Name: "kwl",
		Sets:   []*nft.Set{{Name: "door4", Type: nft.IPv4Addr, Timeout: time.Minute}},
		Chains: []*nft.Chain{ch}}}, b.String()
}

func TestLargePolicyOneTransaction(t *testing.T) {
	ns := newNS(t, "large")
	rs, text := generated(10000)
	res, err := Apply(context.Background(), opts(t, ns), rs)
	if err != nil {
		t.Fatal(err)
	}
	out := nftList(t, ns, "table", "inet", "kwl")
	if got := strings.Count(out, "@door4 accept"); got != 10000 {
		t.Fatalf("%d rules loaded", got)
	}
	t.Logf("10000 statements: %d messages in one batch", res.Messages)
	ref := newNS(t, "largeref")
	mustInput(t, ref, []byte(text), "nft", "-f", "-")
	if want := nftList(t, ref, "table", "inet", "kwl"); normalize(want) != normalize(out) {
		t.Errorf("netlink load of the generated policy differs from nft -f")
	}
}

// BenchmarkDeploy10k compares a deploy of 10,000 statements over netlink
// with `nft -f` of the same ruleset text, in the same run.
func BenchmarkDeploy10k(b *testing.B) {
	ns := newNS(b, "bench")
	rs, text := generated(10000)
	o := Options{NetNS: ns.Name, StateDir: b.TempDir()}
	ctx := context.Background()
	var netlinkTime, nftTime time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := Apply(ctx, o, rs); err != nil {
			b.Fatal(err)
		}
		netlinkTime += time.Since(start)
		start = time.Now()
		if _, err := ns.RunInput([]byte("table inet kwl\ndelete table inet kwl\n"+text), "nft", "-f", "-"); err != nil {
			b.Fatal(err)
		}
		nftTime += time.Since(start)
	}
	b.ReportMetric(float64(netlinkTime.Milliseconds())/float64(b.N), "deploy-ms/op")
	b.ReportMetric(float64(nftTime.Milliseconds())/float64(b.N), "nft-f-ms/op")
	b.ReportMetric(float64(netlinkTime)/float64(nftTime), "deploy/nft-f")
	_ = strconv.Itoa
}

// TestExamplesOverThemselves: every policy of the golden files (the
// shipped examples among them), loaded, is no change to a dry run of
// itself, whatever the kernel leaves out of its dumps (a TCP reset's ICMP
// code).
func TestExamplesOverThemselves(t *testing.T) {
	ns := newNS(t, "self")
	for name, pol := range irtest.Goldens(t, filepath.Join("..", "examples"), nft.Name) {
		rs, diags := nft.Lower(pol)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		o := opts(t, ns)
		o.Secret = func(path string) ([]byte, error) { return secret.StandIn(path), nil }
		mustDeploy(t, o, rs)
		o.DryRun = true
		res := mustDeploy(t, o, rs)
		if !res.Changes.Empty() {
			var b strings.Builder
			res.Changes.Write(&b)
			t.Errorf("%s over itself changes:\n%s", name, b.String())
		}
	}
}
