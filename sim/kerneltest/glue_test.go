//go:build kwlglue

package kerneltest

import (
	"fmt"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
)

func init() {
	newModel = func(backend string, pol *lang.Policy, n *nft.Ruleset, i *iptables.Ruleset) Model {
		return &simModel{backend: backend, pol: pol, nft: n, ipt: i}
	}
}

// simModel predicts with kwl's simulator, as `kwl test` runs a test block:
// each packet is a step of a test, at the time it was sent.
type simModel struct {
	backend string
	pol     *lang.Policy
	nft     *nft.Ruleset
	ipt     *iptables.Ruleset
}

func (m *simModel) Predict(pkts []Packet) ([]Prediction, error) {
	t := &lang.Test{Name: "kernel"}
	for _, p := range pkts {
		st := &lang.Step{At: p.At, Src: p.Src, SPort: p.SPort, Port: p.Port, Kind: p.Kind}
		if p.Dst.IsValid() && p.Dst != FW4 && p.Dst != FW6 {
			st.Dst = p.Dst
		}
		t.Steps = append(t.Steps, st)
	}
	res := sim.RunTest(m.pol, t, m.backend)
	if len(res.Steps) != len(pkts) {
		return nil, fmt.Errorf("simulator returned %d steps for %d packets", len(res.Steps), len(pkts))
	}
	out := make([]Prediction, len(pkts))
	for i, r := range res.Steps {
		out[i] = Prediction{Verdict: r.Verdict, Rule: r.Rule, Explain: r.Explain}
	}
	return out, nil
}
