//go:build linux

package nftnl

import (
	"fmt"
	"io"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

// Batch is a list of nf_tables netlink messages meant to be sent as one
// batch (one transaction), each with a note of what it does, so that an
// error the kernel reports for one message can be traced back to the
// policy statement it comes from.
//
// Messages are marshalled by google/nftables: Add runs a function on a
// Conn that only records what it would send.
type Batch struct {
	Msgs  []netlink.Message
	Notes []Note
	conn  *nftables.Conn
	sent  []netlink.Message
}

// Note says what one message of a batch does.
type Note struct {
	What   string   // "add table inet kwl", "add rule to chain input", ...
	Origin lang.Ref // the statement a rule comes from; zero for the rest
	Chain  string   // for rules: the chain and the rule's position in it (from 0)
	Index  int
}

// NewBatch returns an empty batch.
func NewBatch() *Batch {
	b := &Batch{}
	// A lasting Conn: one recording socket for the whole batch rather
	// than one per Flush.
	b.conn, _ = nftables.New(nftables.AsLasting(), nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		b.sent = append(b.sent, req...)
		// No reply: the recording Conn acknowledges nothing and
		// expects nothing (io.EOF reads as an empty reply).
		return nil, io.EOF
	}))
	return b
}

// Add runs f on the recording Conn and appends what it queued, every
// message with the note n.
func (b *Batch) Add(n Note, f func(c *nftables.Conn) error) error {
	if err := f(b.conn); err != nil {
		return err
	}
	b.sent = b.sent[:0]
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("marshal %s: %w", n.What, err)
	}
	for _, m := range b.sent {
		switch m.Header.Type {
		case netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), netlink.HeaderType(unix.NFNL_MSG_BATCH_END):
			continue
		}
		m = PatchMessage(m)
		// The sender numbers the messages.
		m.Header.Sequence, m.Header.PID, m.Header.Length = 0, 0, 0
		b.Msgs = append(b.Msgs, m)
		b.Notes = append(b.Notes, n)
	}
	return nil
}

// AddRuleset appends the messages that create the converted ruleset: its
// table (created if missing, left as it is if present), named sets,
// chains, and rules with their anonymous sets.
func (b *Batch) AddRuleset(n *Ruleset) error {
	fam := FamilyName(n.Table.Family)
	if err := b.Add(Note{What: "add table " + fam + " " + n.Table.Name}, func(c *nftables.Conn) error {
		c.AddTable(n.Table)
		return nil
	}); err != nil {
		return err
	}
	for _, s := range n.Sets {
		first := len(b.Msgs)
		// The elements go in messages of ElemsPerMessage: a message's
		// list of them is one attribute, whose length is 16 bits, and a
		// longer one overflows it (the kernel then misreads the batch).
		es := Elements(s.From)
		first0 := min(len(es), ElemsPerMessage)
		if err := b.Add(Note{What: "add set " + s.Set.Name, Origin: s.From.Origin}, func(c *nftables.Conn) error {
			if err := c.AddSet(s.Set, es[:first0]); err != nil {
				return err
			}
			for i := first0; i < len(es); i += ElemsPerMessage {
				if err := c.SetAddElements(s.Set, es[i:min(i+ElemsPerMessage, len(es))]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if s.From.Type == nft.TokenKey {
			for i := first; i < len(b.Msgs); i++ {
				b.Msgs[i] = withTypeof(b.Msgs[i])
			}
		}
	}
	for _, ch := range n.Chains {
		if err := b.Add(Note{What: "add chain " + ch.Name}, func(c *nftables.Conn) error {
			c.AddChain(ch)
			return nil
		}); err != nil {
			return err
		}
	}
	for _, r := range n.Rules {
		note := Note{What: fmt.Sprintf("add rule %d to chain %s", r.Index+1, r.Chain.Name), Origin: r.From.Origin, Chain: r.Chain.Name, Index: r.Index}
		if err := b.Add(note, func(c *nftables.Conn) error {
			for _, a := range r.Anon {
				if err := c.AddSet(a.Set, a.Elems); err != nil {
					return err
				}
			}
			c.AddRule(r.Rule)
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// FamilyName is how nft names a table family: inet, ip, ip6.
func FamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	}
	return fmt.Sprintf("family%d", f)
}

// ElemsPerMessage is how many elements a message adds at most: 256 of
// kwl's largest (a token of 16 bytes with a timeout) take some 12 kB,
// well within an attribute's 64 kB.
const ElemsPerMessage = 256

// Elements returns the elements a set is loaded with (tokens), each with
// its own timeout.
func Elements(s *nft.Set) []nftables.SetElement {
	var es []nftables.SetElement
	for _, e := range s.Elements {
		es = append(es, nftables.SetElement{Key: append([]byte(nil), e.Key[:]...), Timeout: e.Timeout})
	}
	return es
}
