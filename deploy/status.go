//go:build linux

package deploy

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// State is what kwl's table holds now: its sets with their elements (open
// doors, limit buckets, bans) and its rules with their counters.
type State struct {
	Table  string `json:"table"`
	Loaded bool   `json:"loaded"`
	// Policy identifies the policy the table was loaded from (its mark:
	// "sha256:" and the first 8 bytes of the source's hash, in hex).
	Policy string      `json:"policy,omitempty"`
	Sets   []SetState  `json:"sets"`
	Rules  []RuleState `json:"rules"`
	// Statements adds up the counters of the rules that decide for each
	// statement, by the rules' comment ("limit ssh, line 6").
	Statements []StatementState `json:"statements"`
}

// StatementState is what one statement's rules admitted and refused
// since the table was loaded.
type StatementState struct {
	Statement       string `json:"statement"`
	AdmittedPackets uint64 `json:"admitted_packets"`
	AdmittedBytes   uint64 `json:"admitted_bytes"`
	RefusedPackets  uint64 `json:"refused_packets"`
	RefusedBytes    uint64 `json:"refused_bytes"`
}

// SetState is one named set and its live elements.
type SetState struct {
	Name     string         `json:"name"`
	Comment  string         `json:"comment,omitempty"`
	Type     string         `json:"type"`
	Timeout  float64        `json:"timeout_s,omitempty"`
	Size     uint32         `json:"size,omitempty"`
	Elements []ElementState `json:"elements"`
	// Tokens, for a secret knock's token set, counts the tokens it
	// holds, which Elements leaves out: each opens the door once.
	// LastWindow is the last window loaded (kwl deploy --renew).
	Tokens     int   `json:"tokens,omitempty"`
	LastWindow int64 `json:"last_window,omitempty"`
}

// ElementState is one element: a source (or masked source) and the time
// it has left.
type ElementState struct {
	Key     string  `json:"key"`
	Expires float64 `json:"expires_s,omitempty"` // seconds left; 0: never
	Limit   bool    `json:"limit,omitempty"`     // carries a token bucket
}

// add counts a deciding rule's packets and bytes, admitted or refused.
func (s *StatementState) add(admitted bool, packets, bytes uint64) {
	if admitted {
		s.AdmittedPackets += packets
		s.AdmittedBytes += bytes
	} else {
		s.RefusedPackets += packets
		s.RefusedBytes += bytes
	}
}

// RuleState is a rule's place, comment and counter (when it has one).
type RuleState struct {
	Chain   string `json:"chain"`
	Index   int    `json:"index"`
	Comment string `json:"comment,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Counter bool   `json:"counter"`
	Verdict string `json:"verdict,omitempty"` // accept, drop or reject; "" for a rule that goes on
}

// Status reads kwl's table.
func Status(ctx context.Context, o Options) (*State, error) {
	if err := check(); err != nil {
		return nil, err
	}
	t, err := openTarget(o.NetNS)
	if err != nil {
		return nil, err
	}
	defer t.close()
	name := o.table()
	st := &State{Table: "inet " + name}
	l, err := t.readLive(nftables.TableFamilyINet, name, true)
	if err != nil || l == nil {
		return st, err
	}
	st.Loaded = true
	if l.mark != nil {
		st.Policy = l.mark.Policy
	}
	for _, s := range l.sets {
		if s.anonymous() {
			continue
		}
		ss := SetState{Name: s.name, Comment: s.comment, Type: typeNames[s.keyType], Timeout: s.timeout.Seconds(), Size: s.size, Elements: []ElementState{}}
		if _, last, _, ok := splitTokenComment(s.comment); ok {
			ss.Tokens, ss.LastWindow = len(s.elems), last
			st.Sets = append(st.Sets, ss)
			continue
		}
		for _, e := range s.elems {
			es := ElementState{Key: keyString(e.key), Expires: e.expires.Seconds(), Limit: e.hasExpr}
			ss.Elements = append(ss.Elements, es)
		}
		sort.Slice(ss.Elements, func(i, j int) bool { return ss.Elements[i].Key < ss.Elements[j].Key })
		st.Sets = append(st.Sets, ss)
	}
	idx := map[string]int{}
	byStmt := map[string]*StatementState{}
	for _, m := range l.rules {
		rs := ruleState(m)
		rs.Index = idx[rs.Chain]
		idx[rs.Chain]++
		st.Rules = append(st.Rules, rs)
		if !rs.Counter || rs.Verdict == "" || rs.Comment == "" {
			continue
		}
		s := byStmt[rs.Comment]
		if s == nil {
			s = &StatementState{Statement: rs.Comment}
			byStmt[rs.Comment] = s
		}
		s.add(rs.Verdict == "accept", rs.Packets, rs.Bytes)
	}
	st.Statements = []StatementState{}
	for _, s := range byStmt {
		st.Statements = append(st.Statements, *s)
	}
	sort.Slice(st.Statements, func(i, j int) bool { return st.Statements[i].Statement < st.Statements[j].Statement })
	return st, nil
}

func keyString(k []byte) string {
	if a, ok := netip.AddrFromSlice(k); ok {
		return a.String()
	}
	return hex.EncodeToString(k)
}

func ruleState(m netlink.Message) RuleState {
	var rs RuleState
	attrs, _ := netlink.UnmarshalAttributes(m.Data[4:])
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_RULE_CHAIN:
			rs.Chain = attrString(a.Data)
		case unix.NFTA_RULE_USERDATA:
			rs.Comment = udString(a.Data, 0)
		case unix.NFTA_RULE_EXPRESSIONS:
			list, _ := netlink.UnmarshalAttributes(a.Data)
			for _, el := range list {
				ex, _ := netlink.UnmarshalAttributes(el.Data)
				var name string
				for _, x := range ex {
					if x.Type == unix.NFTA_EXPR_NAME {
						name = attrString(x.Data)
					}
				}
				switch name {
				case "reject":
					rs.Verdict = "reject"
				case "immediate":
					if v, ok := immVerdict(ex); ok {
						switch v {
						case nfAccept:
							rs.Verdict = "accept"
						case nfDrop:
							rs.Verdict = "drop"
						}
					}
				}
				if name != "counter" {
					continue
				}
				for _, x := range ex {
					if x.Type&^unix.NLA_F_NESTED != unix.NFTA_EXPR_DATA {
						continue
					}
					in, _ := netlink.UnmarshalAttributes(x.Data)
					for _, c := range in {
						switch c.Type {
						case unix.NFTA_COUNTER_PACKETS:
							rs.Packets += be64(c.Data)
						case unix.NFTA_COUNTER_BYTES:
							rs.Bytes += be64(c.Data)
						}
					}
					rs.Counter = true
				}
			}
		}
	}
	return rs
}

// The verdict codes of include/uapi/linux/netfilter.h.
const (
	nfDrop   = 0
	nfAccept = 1
)

// immVerdict returns the verdict code of an immediate expression's
// attributes, when it sets the verdict register.
func immVerdict(ex []netlink.Attribute) (uint32, bool) {
	for _, x := range ex {
		if x.Type&^unix.NLA_F_NESTED != unix.NFTA_EXPR_DATA {
			continue
		}
		in, _ := netlink.UnmarshalAttributes(x.Data)
		for _, a := range in {
			if a.Type&^unix.NLA_F_NESTED != unix.NFTA_IMMEDIATE_DATA {
				continue
			}
			data, _ := netlink.UnmarshalAttributes(a.Data)
			for _, d := range data {
				if d.Type&^unix.NLA_F_NESTED != unix.NFTA_DATA_VERDICT {
					continue
				}
				vs, _ := netlink.UnmarshalAttributes(d.Data)
				for _, v := range vs {
					if v.Type == unix.NFTA_VERDICT_CODE && len(v.Data) == 4 {
						return uint32(v.Data[0])<<24 | uint32(v.Data[1])<<16 | uint32(v.Data[2])<<8 | uint32(v.Data[3]), true
					}
				}
			}
		}
	}
	return 0, false
}

// Write prints the state for people.
func (st *State) Write(w io.Writer) {
	if !st.Loaded {
		fmt.Fprintf(w, "table %s is not loaded\n", st.Table)
		return
	}
	fmt.Fprintf(w, "table %s", st.Table)
	if st.Policy != "" {
		fmt.Fprintf(w, ", policy %s", st.Policy)
	}
	fmt.Fprintln(w)
	for _, s := range st.Sets {
		what := s.Name
		if s.Comment != "" {
			what += " (" + s.Comment + ")"
		}
		if s.LastWindow != 0 {
			end := secret.Start(s.LastWindow+1, lang.TokenWindow)
			fmt.Fprintf(w, "\nset %s: %d token(s), not shown, through %s\n", what, s.Tokens, end.Format(time.RFC3339))
			continue
		}
		fmt.Fprintf(w, "\nset %s: %d element(s)\n", what, len(s.Elements))
		for _, e := range s.Elements {
			left := "no expiry"
			if e.Expires > 0 {
				left = (time.Duration(e.Expires*1000) * time.Millisecond).String() + " left"
			}
			if e.Limit {
				left += ", token bucket"
			}
			fmt.Fprintf(w, "\t%-40s %s\n", e.Key, left)
		}
	}
	if len(st.Statements) > 0 {
		fmt.Fprintf(w, "\nby statement (since the table was loaded):\n")
		for _, s := range st.Statements {
			fmt.Fprintf(w, "\t%-40s admitted %d packets (%d bytes), refused %d packets (%d bytes)\n",
				s.Statement, s.AdmittedPackets, s.AdmittedBytes, s.RefusedPackets, s.RefusedBytes)
		}
	}
	counted := false
	for _, r := range st.Rules {
		if !r.Counter {
			continue
		}
		if !counted {
			fmt.Fprintf(w, "\ncounters:\n")
			counted = true
		}
		fmt.Fprintf(w, "\t%s rule %d %s: %d packets, %d bytes\n", r.Chain, r.Index+1, r.Comment, r.Packets, r.Bytes)
	}
}
