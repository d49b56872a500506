//go:build linux

package deploy

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// compilePolicy runs a policy through what kwl deploy runs: lang.Load,
// then nft.Lower.
func compilePolicy(t *testing.T, src string) *nft.Ruleset {
	t.Helper()
	pol, diags := lang.Load("policy.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("policy: %v", diags)
	}
	rs, more := nft.Lower(pol)
	if more.HasErrors() {
		t.Fatalf("lower: %v", more)
	}
	return rs
}

// lab is a firewall namespace and a client namespace joined by a veth
// pair: the firewall is fwAddr, the client clAddr.
type lab struct {
	fw, cl *netns.NS
}

const (
	fwAddr = "10.78.0.1"
	clAddr = "10.78.0.2"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{fw: newNS(t, "fw"), cl: newNS(t, "cl")}
	// Interface names are at most 15 bytes; the group's random part
	// keeps them apart from other runs'.
	veth := "kwldp" + l.fw.Name[len(l.fw.Name)-10:len(l.fw.Name)-3]
	if out, err := runCmd("ip", "link", "add", veth+"a", "netns", l.fw.Name, "type", "veth", "peer", "name", veth+"b", "netns", l.cl.Name); err != nil {
		t.Fatalf("veth: %v %s", err, out)
	}
	mustRun(t, l.fw, "ip", "addr", "add", fwAddr+"/24", "dev", veth+"a")
	mustRun(t, l.fw, "ip", "link", "set", veth+"a", "up")
	mustRun(t, l.cl, "ip", "addr", "add", clAddr+"/24", "dev", veth+"b")
	mustRun(t, l.cl, "ip", "link", "set", veth+"b", "up")
	// Each side's address resolved before the test's first packet, and
	// kept: a knock's SYN must not wait for ARP behind a short dial
	// timeout on a busy machine.
	pin := func(ns *netns.NS, dev string, peer *netns.NS, peerDev, peerAddr string) {
		out, err := peer.Run("cat", "/sys/class/net/"+peerDev+"/address")
		if err != nil {
			t.Fatalf("the MAC of %s: %v %s", peerDev, err, out)
		}
		mustRun(t, ns, "ip", "neigh", "replace", peerAddr, "lladdr", strings.TrimSpace(string(out)), "dev", dev, "nud", "permanent")
	}
	pin(l.cl, veth+"b", l.fw, veth+"a", fwAddr)
	pin(l.fw, veth+"a", l.cl, veth+"b", clAddr)
	return l
}

// echo listens on addr in the firewall namespace and echoes lines back;
// the listener is closed when the test ends.
func (l *lab) echo(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	if err := l.fw.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(s)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dial connects from the client namespace. A SYN that the firewall drops
// goes unanswered, and the dial times out: the timeout is kept below the
// kernel's first SYN retransmission (1 s, TCP_TIMEOUT_INIT), so that one
// dial is one SYN.
func (l *lab) dial(port int) (net.Conn, error) {
	var c net.Conn
	err := l.cl.Do(func() (err error) {
		d := net.Dialer{Timeout: 400 * time.Millisecond}
		c, err = d.Dial("tcp4", net.JoinHostPort(fwAddr, strconv.Itoa(port)))
		return
	})
	return c, err
}

// exchange writes a line on c and reads it back.
func exchange(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// doorLeft returns the time the element key of set has left, read with
// Status, and whether it is there.
func doorLeft(t *testing.T, o Options, set, key string) (float64, bool) {
	t.Helper()
	st, err := Status(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sets {
		if s.Name != set {
			continue
		}
		for _, e := range s.Elements {
			if e.Key == key {
				return e.Expires, true
			}
		}
	}
	return 0, false
}

const (
	knockPolicy = "knock 1600 opens ssh for 20s\n"
	// The modified policy moves the knock (its set's comment changes),
	// adds closing ports and a service: the door set keeps its name and
	// type, so its elements carry over.
	knockPolicy2 = "allow http from 10.78.0.0/24\nknock 1600 opens ssh for 20s\nclose ssh on 1599, 1601\n"
)

// TestKnockRedeployPipeline runs policy text through lang.Load, nft.Lower
// and Apply, and real packets through the kernel: a knock opens ssh, a
// redeploy of a modified policy keeps the door with its remaining time,
// and a connection established before the redeploy goes on exchanging
// data after it.
func TestKnockRedeployPipeline(t *testing.T) {
	l := newLab(t)
	l.echo(t, fwAddr+":22")
	o := opts(t, l.fw)
	ctx := context.Background()
	mustDeploy(t, o, compilePolicy(t, knockPolicy))

	if c, err := l.dial(22); err == nil {
		c.Close()
		t.Fatal("ssh answered before the knock")
	}
	if _, ok := doorLeft(t, o, "door_ssh_4", clAddr); ok {
		t.Fatal("a door is open before the knock")
	}
	// The knock: one SYN to 1600, dropped by the knock rule.
	if c, err := l.dial(1600); err == nil {
		c.Close()
		t.Fatal("the knock port answered")
	}
	left, ok := doorLeft(t, o, "door_ssh_4", clAddr)
	if !ok {
		t.Fatal("the knock opened no door")
	}
	if left <= 15 || left > 20 {
		t.Fatalf("door open for %.3fs after the knock, want about 20s", left)
	}
	conn, err := l.dial(22)
	if err != nil {
		t.Fatalf("ssh after the knock: %v", err)
	}
	defer conn.Close()
	if err := exchange(conn, "before"); err != nil {
		t.Fatal(err)
	}
	// The counters, per statement: the knock dropped (its SYN and the
	// retransmissions of the dial), then admitted the connection; the
	// guard refused the connection before the knock.
	st, err := Status(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]StatementState{}
	for _, s := range st.Statements {
		got[s.Statement] = s
	}
	if k := got["knock ssh, line 1"]; k.AdmittedPackets != 1 || k.RefusedPackets < 1 || k.AdmittedBytes == 0 {
		t.Errorf("knock's counters: %+v, want 1 admitted and its knocks refused", k)
	}
	if g := got["ssh is knocked: no open door, no entry"]; g.RefusedPackets < 1 || g.AdmittedPackets != 0 {
		t.Errorf("guard's counters: %+v, want the connection before the knock refused", g)
	}

	// Let the door age, so that a refresh on redeploy would show.
	time.Sleep(time.Second)
	before, _ := doorLeft(t, o, "door_ssh_4", clAddr)
	t0 := time.Now()
	res, err := Apply(ctx, o, compilePolicy(t, knockPolicy2))
	if err != nil {
		t.Fatal(err)
	}
	after, ok := doorLeft(t, o, "door_ssh_4", clAddr)
	elapsed := time.Since(t0).Seconds()
	t.Logf("door: %.3fs left before the redeploy, %.3fs after; the redeploy took %.3fs (%d messages)", before, after, elapsed, res.Messages)
	if !res.Replaced || res.Kept["door_ssh_4"] != 1 {
		t.Errorf("redeploy: replaced %v, kept %v; want the door set's element kept", res.Replaced, res.Kept)
	}
	if !ok {
		t.Fatal("the redeploy closed the door")
	}
	// The element carries its remaining time: what it had, less the time
	// the redeploy took (expirations count in milliseconds, read twice).
	if want := before - elapsed; after > before+0.05 || math.Abs(after-want) > 0.5 {
		t.Errorf("door has %.3fs left after the redeploy, had %.3fs before (%.3fs elapsed): want the remaining time kept", after, before, elapsed)
	}
	if err := exchange(conn, "after"); err != nil {
		t.Fatalf("established connection cut by the redeploy: %v", err)
	}
	// The door carried over admits new connections.
	c2, err := l.dial(22)
	if err != nil {
		t.Fatalf("ssh after the redeploy: %v", err)
	}
	c2.Close()

	// The new policy is in force: 1599 closes the door; new connections
	// are dropped, the established one still exchanges data.
	if c, err := l.dial(1599); err == nil {
		c.Close()
		t.Fatal("the closing port answered")
	}
	if _, ok := doorLeft(t, o, "door_ssh_4", clAddr); ok {
		t.Fatal("1599 did not close the door: the modified policy is not loaded")
	}
	if c, err := l.dial(22); err == nil {
		c.Close()
		t.Fatal("ssh answered after the door was closed")
	}
	if err := exchange(conn, "still"); err != nil {
		t.Fatalf("established connection cut by closing the door: %v", err)
	}
}

// TestLargePolicyPipeline deploys a generated policy of 10,000 statements
// (5,000 services, each allowed from its own /24) through lang.Load,
// nft.Lower and Apply in one transaction, and checks that the kernel
// holds what nft -f of the rendered text gives it.
func TestLargePolicyPipeline(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "service s%d = tcp/%d\nallow s%d from 10.%d.%d.0/24\n", i, 10000+i, i, i/250, i%250)
	}
	ns, ref := newNS(t, "bigp"), newNS(t, "bigpref")
	start := time.Now()
	rs := compilePolicy(t, b.String())
	compiled := time.Since(start)
	res, err := Apply(context.Background(), opts(t, ns), rs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 statements: compiled in %v, deployed in %v as %d messages in one batch", compiled, time.Since(start)-compiled, res.Messages)
	text, err := rs.Render()
	if err != nil {
		t.Fatal(err)
	}
	mustInput(t, ref, []byte(text), "nft", "-f", "-")
	got, want := nftList(t, ns, "table", "inet", "kwl"), nftList(t, ref, "table", "inet", "kwl")
	if n := strings.Count(got, "\n\tchain svc_"); n != 5000 {
		t.Errorf("%d service chains loaded, want 5000", n)
	}
	if normalize(got) != normalize(want) {
		t.Errorf("netlink load of the generated policy differs from nft -f of its rendering")
	}
}
