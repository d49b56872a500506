//go:build linux

package kerneltest

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/lang"
)

// shorewallLimit is Shorewall's Limit:SSHA,3,2 as iptables rules: at most
// 3 new ssh connections per source per 2 seconds.
const shorewallLimit = `*filter
:INPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --name lim --set --rsource
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --name lim --update --seconds 2 --hitcount 4 --rsource -j DROP
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`

// recentModel is a minimal model of shorewallLimit, written from
// net/netfilter/xt_recent.c (recent_mt): --set pushes a stamp; --update
// counts the stamps within --seconds (inclusive) and pushes one only when
// the rule matches; the ring holds roundup_pow_of_two(hitcount) = 4
// stamps. With broken set, --update also stamps when it does not match:
// the mistake the harness must catch.
type recentModel struct{ broken bool }

func (m recentModel) Predict(pkts []Packet) ([]Prediction, error) {
	const hz = 250
	rings := map[netip.Addr][]int64{}
	push := func(src netip.Addr, j int64) {
		r := append(rings[src], j)
		if len(r) > 4 {
			r = r[len(r)-4:]
		}
		rings[src] = r
	}
	out := make([]Prediction, len(pkts))
	for i, p := range pkts {
		if p.Port != tcp(22) || p.Kind != lang.New {
			continue // Accept: no rule of the model matches
		}
		j := int64(p.At * hz / time.Second)
		push(p.Src, j) // --set
		hits := 0
		for _, s := range rings[p.Src] {
			if s >= j-2*hz {
				hits++
			}
		}
		match := hits >= 4
		if match || m.broken {
			push(p.Src, j)
		}
		if match {
			out[i] = Prediction{Verdict: lang.Drop, Explain: "over the limit"}
		}
	}
	return out, nil
}

// TestHarnessCatchesBrokenModel runs one scenario on the kernel through an
// xt_recent limit and compares it with a correct model and with one whose
// --update stamps when it does not match. The correct model must agree on
// every packet, the broken one must be reported.
func TestHarnessCatchesBrokenModel(t *testing.T) {
	needRoot(t)
	pkts := Resolve(Steps(`
		0s     198.51.100.10 22
		150ms  198.51.100.10 22
		300ms  198.51.100.10 22
		450ms  198.51.100.10 22     # 4th within 2s: dropped
		600ms  198.51.100.10 22     # a retry while blocked: dropped, two more stamps
		750ms  198.51.100.20 22
		900ms  198.51.100.20 22
		3.1s   198.51.100.10 22
		3.25s  198.51.100.10 22
		3.4s   198.51.100.10 22
		3.55s  198.51.100.10 22
	`))
	load := func(l *Lab) error { return l.LoadIptables(shorewallLimit, "") }
	good := Target{Backend: "iptables", Load: load, Model: recentModel{}}
	res, err := Run(good, pkts, false)
	if err != nil {
		t.Fatal(err)
	}
	checkGone(t, res.Labs...)
	for _, s := range res.Inconsistent {
		t.Errorf("self-check: %s", s)
	}
	for _, d := range res.Disagreements {
		t.Errorf("the correct model disagrees with the kernel: %s", d)
	}
	t.Logf("correct model: %d packets compared, %d disagreements", len(res.Outcomes), len(res.Disagreements))

	// The broken model, compared with the same kernel run.
	ds, err := Compare(recentModel{broken: true}, res.Outcomes)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) == 0 {
		t.Fatal("the harness did not catch a model whose --update stamps when it does not match")
	}
	t.Logf("broken model: %d packets compared, %d disagreements (expected), first:\n%s", len(res.Outcomes), len(ds), ds[0])
}

// TestDifferentialCatchesFlippedRule runs a catalog scenario on the kernel
// with kwl's iptables ruleset and compares it with the simulator running
// the same ruleset but for one xt_recent rule: the limit's --set turned
// into --rcheck (so the simulated list no longer records the admitted
// connections). The comparison must report disagreements.
func TestDifferentialCatchesFlippedRule(t *testing.T) {
	needRoot(t)
	var sc Scenario
	for _, c := range Catalog() {
		if c.Name == "limit-window-retries" {
			sc = c
		}
	}
	sc.Packets = Resolve(sc.Packets)
	pol, diags := lang.Load(sc.Name+".kwl", []byte(sc.Policy))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	good, err := target("iptables", pol, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(good, sc.Packets, false)
	if err != nil {
		t.Fatal(err)
	}
	checkGone(t, res.Labs...)
	if len(res.Disagreements) != 0 {
		t.Fatalf("the true simulator disagrees: %v", res.Disagreements)
	}

	flipped, diags := iptables.Lower(pol)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	n := 0
	for _, fam := range []*iptables.Family{flipped.V4, flipped.V6} {
		if fam == nil {
			continue
		}
		for _, tb := range fam.Tables {
			for _, c := range tb.Chains {
				for _, r := range c.Rules {
					if r.Recent != nil && r.Recent.Op == iptables.Set && strings.Contains(r.Recent.Name, "lim") && n == 0 {
						r.Recent.Op = iptables.Rcheck
						n++
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no --set rule of a limit to flip in the lowered ruleset")
	}
	ds, err := Compare(newModel("iptables", pol, nil, flipped, time.Time{}), res.Outcomes)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) == 0 {
		t.Fatal("the harness did not catch a simulator running a ruleset with a limit's --set flipped to --rcheck")
	}
	t.Logf("flipped rule: %d packets compared, %d disagreements (expected); first:\n%s", len(res.Outcomes), len(ds), ds[0])
}
