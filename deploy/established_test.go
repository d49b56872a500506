//go:build linux

package deploy

import (
	"os/exec"
	"testing"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// guarded is a ruleset that accepts established flows and new ssh
// connections only from sources in door set name.
func guarded(name string) *nft.Ruleset {
	tcp22 := []nft.Expr{&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}}}
	return &nft.Ruleset{Table: &nft.Table{Family: "inet", Name: "kwl",
		Sets: []*nft.Set{{Name: name, Type: nft.IPv4Addr, Timeout: time.Minute}},
		Chains: []*nft.Chain{{Name: "input", Type: "filter", Hook: nft.Input, Policy: nft.Accept, Rules: []*nft.Rule{
			{Exprs: []nft.Expr{&nft.Match{Field: nft.CtState, Values: []any{"established", "related"}}, &nft.Verdict{Kind: nft.Accept}}},
			{Origin: pos(1), Exprs: append(append([]nft.Expr{}, tcp22...), &nft.Lookup{Set: name, Key: nft.Key{Field: nft.IPSaddr}}, &nft.Verdict{Kind: nft.Accept})},
			{Origin: pos(1), Exprs: append(append([]nft.Expr{}, tcp22...), &nft.Verdict{Kind: nft.Drop})},
		}}}}}
}

func TestEstablishedSurvivesRedeploy(t *testing.T) {
	l := newLab(t)
	l.echo(t, fwAddr+":22")
	o := opts(t, l.fw)
	mustDeploy(t, o, guarded("door"))
	mustRun(t, l.fw, "nft", "add", "element", "inet", "kwl", "door", "{ "+clAddr+" }")
	conn, err := l.dial(22)
	if err != nil {
		t.Fatalf("door open, connect: %v", err)
	}
	defer conn.Close()
	if err := exchange(conn, "before"); err != nil {
		t.Fatal(err)
	}
	// The new ruleset has another door set: the source's door is gone,
	// so a new connection is dropped, but the established one goes on.
	mustDeploy(t, o, guarded("door2"))
	if err := exchange(conn, "after"); err != nil {
		t.Fatalf("established connection cut by the redeploy: %v", err)
	}
	if c, err := l.dial(22); err == nil {
		c.Close()
		t.Fatalf("a new connection passed without a door: the redeploy did not take effect")
	}
}

func mustRun(t *testing.T, ns *netns.NS, args ...string) {
	t.Helper()
	must(t, ns, args[0], args[1:]...)
}

func runCmd(args ...string) ([]byte, error) {
	return exec.Command(args[0], args[1:]...).CombinedOutput()
}
