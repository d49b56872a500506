package nft

import (
	"strings"
	"testing"
	"time"
)

// mustRender returns rs.Render(), failing the test on an error.
func mustRender(t testing.TB, rs *Ruleset) string {
	t.Helper()
	s, err := rs.Render()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ruleText returns RuleString(r), or its error as text.
func ruleText(r *Rule) string {
	s, err := RuleString(r)
	if err != nil {
		return "error: " + err.Error()
	}
	return s
}

// strangeExpr is an expression of a type render.go does not know.
type strangeExpr struct{ Expr }

// TestRenderFailsClosed checks that what nft syntax has no word for is an
// error of Render, never a comment that would swallow the rest of the
// rule (its verdict with it) or a default.
func TestRenderFailsClosed(t *testing.T) {
	for name, tc := range map[string]struct {
		e    Expr
		want string
	}{
		"expression": {strangeExpr{}, "unknown expression nft.strangeExpr"},
		"unit":       {&Limit{Rate: 3, Unit: 13 * time.Second}, "rate unit 13s"},
		"dynset unit": {&Dynset{Op: Add, Set: "s", Key: Key{Field: IPSaddr},
			Limit: &Limit{Rate: 1, Unit: 2 * time.Minute}}, "rate unit 2m0s"},
		"key":       {&Lookup{Key: Key{Field: THDport}, Set: "s"}, `unknown set key "th dport"`},
		"dynset op": {&Dynset{Op: "replace", Set: "s", Key: Key{Field: IPSaddr}}, `unknown operation "replace"`},
		"verdict":   {&Verdict{Kind: "queue"}, `unknown verdict "queue"`},
	} {
		t.Run(name, func(t *testing.T) {
			rs := &Ruleset{Table: &Table{Family: "inet", Name: "kwl", Chains: []*Chain{{
				Name:  "input",
				Rules: []*Rule{{Exprs: []Expr{tc.e, &Verdict{Kind: Drop}}}},
			}}}}
			out, err := rs.Render()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chain input, rule 1") {
				t.Fatalf("Render: %q, %v; want an error with %q", out, err, tc.want)
			}
			if out != "" {
				t.Errorf("Render returned text with its error:\n%s", out)
			}
		})
	}
}

// TestRenderTokens: a set of tokens loaded with their own timeouts, and
// the rule that uses one up, in nft's syntax.
func TestRenderTokens(t *testing.T) {
	tok := Key{Field: Token}
	var k1, k2 [16]byte
	for i := range k1 {
		k1[i], k2[i] = byte(i), 0xff
	}
	rs := &Ruleset{Table: &Table{Family: "inet", Name: "kwl",
		Sets: []*Set{{Name: "tok", Type: TokenKey, Elements: []Element{{Key: k1, Timeout: 90 * time.Second}, {Key: k2, Timeout: time.Hour}}}},
		Chains: []*Chain{{Name: "input", Rules: []*Rule{{Exprs: []Expr{
			&Match{Field: UDPLength, Values: []any{uint16(24)}},
			&Lookup{Set: "tok", Key: tok},
			&Dynset{Op: Delete, Set: "tok", Key: tok},
			&Verdict{Kind: Drop},
		}}}}}}}
	out := mustRender(t, rs)
	for _, want := range []string{
		"\t\ttypeof @th,64,128\n\t\tflags dynamic,timeout\n",
		"\t\telements = { 0x000102030405060708090a0b0c0d0e0f timeout 1m30s, 0xffffffffffffffffffffffffffffffff timeout 1h }\n",
		"udp length 24 @th,64,128 @tok delete @tok { @th,64,128 } drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
