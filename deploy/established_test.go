package deploy

import (
	"bufio"
	"context"
	"net"
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
	fw, cl := newNS(t, "fw"), newNS(t, "cl")
	veth := "kwldv" + fw.Name[len(fw.Name)-10:len(fw.Name)-3]
	for _, c := range [][]string{
		{"ip", "link", "add", veth + "a", "netns", fw.Name, "type", "veth", "peer", "name", veth + "b", "netns", cl.Name},
	} {
		if out, err := runCmd(c...); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	mustRun(t, fw, "ip", "addr", "add", "10.77.0.1/24", "dev", veth+"a")
	mustRun(t, fw, "ip", "link", "set", veth+"a", "up")
	mustRun(t, cl, "ip", "addr", "add", "10.77.0.2/24", "dev", veth+"b")
	mustRun(t, cl, "ip", "link", "set", veth+"b", "up")
	var ln net.Listener
	if err := fw.Do(func() (err error) { ln, err = net.Listen("tcp4", "10.77.0.1:22"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // echo lines
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(l))
				}
			}()
		}
	}()
	o := opts(t, fw)
	ctx := context.Background()
	if _, err := Apply(ctx, o, guarded("door")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, fw, "nft", "add", "element", "inet", "kwl", "door", "{ 10.77.0.2 }")
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := cl.Do(func() (err error) {
			d := net.Dialer{Timeout: 700 * time.Millisecond}
			c, err = d.Dial("tcp4", "10.77.0.1:22")
			return
		})
		return c, err
	}
	conn, err := dial()
	if err != nil {
		t.Fatalf("door open, connect: %v", err)
	}
	defer conn.Close()
	echo := func(msg string) error {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte(msg + "\n")); err != nil {
			return err
		}
		_, err := bufio.NewReader(conn).ReadString('\n')
		return err
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	// The new ruleset has another door set: the source's door is gone,
	// so a new connection is dropped, but the established one goes on.
	if _, err := Apply(ctx, o, guarded("door2")); err != nil {
		t.Fatal(err)
	}
	if err := echo("after"); err != nil {
		t.Fatalf("established connection cut by the redeploy: %v", err)
	}
	if c, err := dial(); err == nil {
		c.Close()
		t.Fatalf("a new connection passed without a door: the redeploy did not take effect")
	}
}

func mustRun(t *testing.T, ns *netns.NS, args ...string) {
	t.Helper()
	if _, err := ns.Run(args[0], args[1:]...); err != nil {
		t.Fatal(err)
	}
}

func runCmd(args ...string) ([]byte, error) {
	return exec.Command(args[0], args[1:]...).CombinedOutput()
}
