//go:build linux

package kerneltest

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/internal/netns"
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
