//go:build linux

package kerneltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// nftDynsetOpDelete is NFT_DYNSET_OP_DELETE (include/uapi/linux/netfilter/
// nf_tables.h, enum nft_dynset_ops: add, update, delete), which
// golang.org/x/sys does not name.
const nftDynsetOpDelete = 2

// TestTokenSetFacts pins, over netlink with google/nftables, the kernel
// mechanism a knock by one authenticated datagram would rest on, as a
// fact test (it does not use kwl): a set keyed by 16 raw payload bytes
// (@th,64,128: the UDP payload's first 16 bytes), elements with their own
// timeouts, and a rule that, for a datagram of exactly 16 payload bytes
// whose payload is in the set, deletes that element from the packet path
// (nft_dynset's delete operation) and adds the source to a door set. So a
// token opens a door once: a replay, a forged token, a longer datagram
// that starts with a token, and a token whose timeout ran out open
// nothing.
func TestTokenSetFacts(t *testing.T) {
	needRoot(t)
	ns := netns.ForTest(t, netns.Group("kwltok"))
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	tok := func(b byte) []byte { return bytes.Repeat([]byte{b}, 16) }
	err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "kwltok"})
		key := nftables.TypeInteger
		key.Bytes = 16 // typeof @th,64,128
		tokens := &nftables.Set{Table: tb, Name: "tokens", KeyType: key, HasTimeout: true, Dynamic: true}
		doors := &nftables.Set{Table: tb, Name: "door", KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true}
		if err := c.AddSet(tokens, []nftables.SetElement{
			{Key: tok(1), Timeout: time.Hour},
			{Key: tok(2), Timeout: time.Hour},
			{Key: tok(3), Timeout: 500 * time.Millisecond},
		}); err != nil {
			return err
		}
		if err := c.AddSet(doors, nil); err != nil {
			return err
		}
		ch := c.AddChain(&nftables.Chain{Table: tb, Name: "in", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(62201)},
			// The UDP length: 8 header bytes and 16 of payload, no more.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 4, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(24)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
			&expr.Lookup{SourceRegister: 1, SetName: tokens.Name, SetID: tokens.ID},
			&expr.Dynset{SrcRegKey: 1, SetName: tokens.Name, SetID: tokens.ID, Operation: nftDynsetOpDelete},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Dynset{SrcRegKey: 1, SetName: doors.Name, SetID: doors.ID, Operation: unix.NFT_DYNSET_OP_ADD, Timeout: time.Minute},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		if err := c.Flush(); err != nil {
			return err
		}
		send := func(payload []byte) error {
			u, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 62201})
			if err != nil {
				return err
			}
			defer u.Close()
			_, err = u.Write(payload)
			return err
		}
		count := func() (int, error) {
			es, err := c.GetSetElements(doors)
			if err != nil {
				return 0, err
			}
			c.FlushSet(doors)
			return len(es), c.Flush()
		}
		time.Sleep(600 * time.Millisecond) // token 3 times out
		for _, step := range []struct {
			what    string
			payload []byte
			opens   int
		}{
			{"a token", tok(1), 1},
			{"the same token again", tok(1), 0},
			{"a forged token", tok(9), 0},
			{"a longer datagram that starts with a token", append(tok(2), 0), 0},
			{"a token whose timeout ran out", tok(3), 0},
			{"another token", tok(2), 1},
		} {
			if err := send(step.payload); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			n, err := count()
			if err != nil {
				return err
			}
			if n != step.opens {
				t.Errorf("%s: %d doors, want %d", step.what, n, step.opens)
			}
		}
		es, err := c.GetSetElements(tokens)
		if err != nil {
			return err
		}
		if len(es) != 0 {
			t.Errorf("%d tokens left, want none (two used, one timed out)", len(es))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTokenRuleset runs kwl's own form of that mechanism on the kernel
// and in the simulator: an nft.Ruleset of a token set (nft.TokenKey,
// elements with their own timeouts) and the rule that uses a token up,
// loaded as nft -f loads its text (nft.Ruleset.Render) and as kwl deploy
// loads it over netlink (deploy.Apply), and executed by sim.NewNFT. A namespace's loopback gets the same datagrams and
// connections; after each, the kernel's verdict on a connection to ssh
// (accepted by a listener, or dropped) must be the simulator's.
func TestTokenRuleset(t *testing.T) {
	needRoot(t)
	tok := nft.Key{Field: nft.Token}
	saddr := nft.Key{Field: nft.IPSaddr}
	udp := []nft.Expr{&nft.Match{Field: nft.L4Proto, Values: []any{lang.UDP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(62201)}}}
	ssh := []nft.Expr{&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(22)}}}
	drop, accept := &nft.Verdict{Kind: nft.Drop}, &nft.Verdict{Kind: nft.Accept}
	rs := &nft.Ruleset{Table: &nft.Table{Family: "inet", Name: "kwltok",
		Sets: []*nft.Set{
			{Name: "tok", Type: nft.TokenKey, Elements: []nft.Element{
				{Key: [16]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Timeout: time.Hour},
				{Key: [16]byte{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, Timeout: time.Hour},
				{Key: [16]byte{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}, Timeout: 400 * time.Millisecond}}},
			{Name: "door", Type: nft.IPv4Addr, Timeout: time.Minute},
		},
		Chains: []*nft.Chain{{Name: "input", Type: "filter", Hook: nft.Input, Policy: nft.Accept, Rules: []*nft.Rule{
			{Exprs: []nft.Expr{&nft.Match{Field: nft.CtState, Values: []any{"established", "related"}}, accept}},
			{Exprs: append(slices.Clone(udp), &nft.Match{Field: nft.UDPLength, Values: []any{uint16(24)}}, &nft.Lookup{Set: "tok", Key: tok},
				&nft.Dynset{Op: nft.Delete, Set: "tok", Key: tok}, &nft.Dynset{Op: nft.Add, Set: "door", Key: saddr}, drop)},
			{Exprs: append(slices.Clone(udp), drop)},
			{Exprs: append(slices.Clone(ssh), &nft.Lookup{Set: "door", Key: saddr}, accept)},
			{Exprs: append(slices.Clone(ssh), drop)},
		}}}}}
	for _, load := range []struct {
		name string
		load func(ns *netns.NS) error
	}{
		{"nft -f", func(ns *netns.NS) error {
			text, err := rs.Render()
			if err != nil {
				return err
			}
			if out, err := ns.RunInput([]byte(text), "nft", "-f", "-"); err != nil {
				return fmt.Errorf("nft -f: %v %s\n%s", err, out, text)
			}
			return nil
		}},
		{"netlink", func(ns *netns.NS) error {
			_, err := deploy.Apply(context.Background(), deploy.Options{NetNS: ns.Name, StateDir: t.TempDir()}, rs)
			return err
		}},
	} {
		t.Run(load.name, func(t *testing.T) { tokenRun(t, rs, load.load) })
	}
}

// tokenRun loads rs into a namespace of its own with load and sends the
// steps of TestTokenRuleset there and to a simulator of rs.
func tokenRun(t *testing.T, rs *nft.Ruleset, load func(*netns.NS) error) {
	lo := netip.MustParseAddr("127.0.0.1")
	s, err := sim.NewNFT(rs, sim.Options{Hosts: []netip.Addr{lo}})
	if err != nil {
		t.Fatal(err)
	}
	ns := netns.ForTest(t, netns.Group("kwltok"))
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	if err := load(ns); err != nil {
		t.Fatal(err)
	}
	ns.Answer(t, "127.0.0.1:22")
	start := time.Now()
	n := 0
	// predict feeds the simulator a packet over the loopback, at the time
	// since start.
	predict := func(pk capture.Packet) lang.Verdict {
		n++
		pk.N, pk.Time, pk.Dst = n, time.Since(start), lo
		v, _, _ := s.Decide(&pk)
		return v
	}
	rep := func(b byte, size int) []byte { return bytes.Repeat([]byte{b}, size) }
	steps := []struct {
		what    string
		payload []byte
		wait    time.Duration
	}{
		{"a token", rep(1, 16), 0},
		{"the same token again", rep(1, 16), 0},
		{"a forged token", rep(9, 16), 0},
		{"a longer datagram that starts with a token", rep(2, 17), 0},
		{"a shorter one", rep(2, 15), 0},
		{"a token past its timeout", rep(3, 16), 500 * time.Millisecond},
		{"another token", rep(2, 16), 0},
	}
	for i, st := range steps {
		time.Sleep(st.wait)
		// Each step from an address of its own (all of 127/8 is the
		// loopback's), so that a door opens for it alone.
		from := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
		var sport int
		err := ns.Do(func() error {
			u, err := net.DialUDP("udp4", &net.UDPAddr{IP: from.AsSlice()}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 62201})
			if err != nil {
				return err
			}
			defer u.Close()
			sport = u.LocalAddr().(*net.UDPAddr).Port
			_, err = u.Write(st.payload)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		pk := capture.Packet{Src: from, Proto: lang.UDP, SPort: uint16(sport), DPort: 62201, UDPLen: uint16(8 + len(st.payload)), Len: 28 + len(st.payload)}
		pk.PayloadN = uint8(copy(pk.Payload[:], st.payload))
		predict(pk)
		time.Sleep(20 * time.Millisecond)
		var c net.Conn
		err = ns.Do(func() (err error) {
			d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
			c, err = d.Dial("tcp4", "127.0.0.1:22")
			return
		})
		kernel := err == nil
		var cport int
		if kernel {
			cport = c.LocalAddr().(*net.TCPAddr).Port
			c.Close()
		}
		simv := predict(capture.Packet{Src: from, Proto: lang.TCP, SPort: uint16(cport), DPort: 22, Flags: capture.SYN, Len: 60}) == lang.Accept
		if kernel != simv {
			t.Errorf("%s: ssh open %v on the kernel, %v in the simulator", st.what, kernel, simv)
		}
	}
}
