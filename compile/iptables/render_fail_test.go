package iptables

import (
	"strings"
	"testing"
)

// mustJumps returns f.Jumps(), failing the test on an error.
func mustJumps(t testing.TB, f *Family) map[string][]string {
	t.Helper()
	js, err := f.Jumps()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// ruleText returns RuleString(r, v6), or its error as text.
func ruleText(r *Rule, v6 bool) string {
	s, err := RuleString(r, v6)
	if err != nil {
		return "error: " + err.Error()
	}
	return s
}

// TestRenderFailsClosed checks that a target, recent operation or limit
// unit that iptables has no word for is an error of Render, never
// written as it comes or replaced by a default.
func TestRenderFailsClosed(t *testing.T) {
	for name, tc := range map[string]struct {
		r    *Rule
		want string
	}{
		"target": {&Rule{Target: Target{Kind: "QUEUE"}}, `unknown target "QUEUE"`},
		"recent": {&Rule{Recent: &Recent{Name: "l", Op: "--reap"}, Target: Target{Kind: DROP}}, `unknown recent operation "--reap"`},
		"unit":   {&Rule{Limit: &Limit{Rate: 3, Unit: "week"}, Target: Target{Kind: ACCEPT}}, `limit unit "week"`},
	} {
		t.Run(name, func(t *testing.T) {
			f := &Family{Tables: []*Table{{Name: "filter", Chains: []*Chain{
				{Name: "INPUT", Builtin: true, Rules: []*Rule{{Target: Target{Kind: JUMP, Chain: "kwl-input"}}}},
				{Name: "kwl-input", Rules: []*Rule{tc.r}},
			}}}}
			rs := &Ruleset{V4: f, V6: &Family{IPv6: true}}
			for what, render := range map[string]func() (string, string, error){
				"Render": rs.Render, "RenderReload": rs.RenderReload, "RenderChains": rs.RenderChains,
			} {
				v4, v6, err := render()
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "table filter, chain kwl-input") {
					t.Errorf("%s: %q, %q, %v; want an error with %q", what, v4, v6, err, tc.want)
				}
				if v4 != "" || v6 != "" {
					t.Errorf("%s returned text with its error", what)
				}
			}
		})
	}
}
