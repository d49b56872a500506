package nft

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Render returns the ruleset as `nft -f` input. The file first declares
// the table, then deletes it, then declares it in full: nft applies a file
// as one transaction, so the load replaces kwl's table atomically whether
// or not it existed, and touches no other table. (Elements of the old
// sets are not carried over; kwl deploy does that over netlink.)
//
// Rendering is a function of the data only: what the simulator executes is
// what this text loads. A rule that holds an expression, key, rate unit or
// verdict that nft syntax has no word for is an error, never a guess.
func (r *Ruleset) Render() (string, error) {
	var b strings.Builder
	t := r.Table
	if t == nil {
		t = &Table{Family: "inet", Name: "kwl"}
	}
	fam, name := t.Family, t.Name
	if fam == "" {
		fam = "inet"
	}
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# kwl: table %s %s, loaded with nft -f (atomic: the table is replaced as a whole)\n", fam, name)
	fmt.Fprintf(&b, "table %s %s\ndelete table %s %s\n\n", fam, name, fam, name)
	fmt.Fprintf(&b, "table %s %s {\n", fam, name)
	for i, s := range t.Sets {
		if i > 0 {
			b.WriteByte('\n')
		}
		renderSet(&b, s)
	}
	for _, c := range t.Chains {
		b.WriteByte('\n')
		if err := renderChain(&b, c); err != nil {
			return "", err
		}
	}
	b.WriteString("}\n")
	return b.String(), nil
}

func renderSet(b *strings.Builder, s *Set) {
	fmt.Fprintf(b, "\tset %s {\n", s.Name)
	if s.Type == TokenKey {
		fmt.Fprintf(b, "\t\ttypeof %s\n", s.Type)
	} else {
		fmt.Fprintf(b, "\t\ttype %s\n", s.Type)
	}
	if s.Size > 0 {
		fmt.Fprintf(b, "\t\tsize %d\n", s.Size)
	}
	switch {
	case s.Timeout > 0:
		b.WriteString("\t\tflags dynamic,timeout\n")
		fmt.Fprintf(b, "\t\ttimeout %s\n", nftDur(s.Timeout))
	case len(s.Elements) > 0 || s.Tokens != nil:
		b.WriteString("\t\tflags dynamic,timeout\n")
	default:
		b.WriteString("\t\tflags dynamic\n")
	}
	if len(s.Elements) > 0 {
		es := make([]string, len(s.Elements))
		for i, e := range s.Elements {
			es[i] = fmt.Sprintf("0x%x", e.Key)
			if e.Timeout > 0 {
				es[i] += " timeout " + nftDur(e.Timeout)
			}
		}
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(es, ", "))
	}
	if s.Comment != "" {
		fmt.Fprintf(b, "\t\tcomment %s\n", quote(s.Comment))
	}
	b.WriteString("\t}\n")
}

func renderChain(b *strings.Builder, c *Chain) error {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	if c.Hook != "" {
		typ := c.Type
		if typ == "" {
			typ = "filter"
		}
		pol := c.Policy
		if pol == "" {
			pol = Accept
		}
		fmt.Fprintf(b, "\t\ttype %s hook %s priority %d; policy %s;\n", typ, c.Hook, c.Priority, pol)
	}
	for i, r := range c.Rules {
		s, err := RuleString(r)
		if err != nil {
			return fmt.Errorf("chain %s, rule %d: %w", c.Name, i+1, err)
		}
		fmt.Fprintf(b, "\t\t%s\n", s)
	}
	b.WriteString("\t}\n")
	return nil
}

// RuleString returns one rule as nft writes it, with its comment, or the
// error of its first expression that cannot be written (ExprString).
func RuleString(r *Rule) (string, error) {
	parts := make([]string, 0, len(r.Exprs)+1)
	for _, e := range r.Exprs {
		s, err := ExprString(e)
		if err != nil {
			return "", err
		}
		parts = append(parts, s)
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+quote(r.Comment))
	}
	return strings.Join(parts, " "), nil
}

// ExprString returns one expression as nft writes it. An expression of a
// type this package does not define, a set key other than a source
// address or the conntrack state, a rate unit other than a second,
// minute, hour, day or week, and an unknown verdict or dynset operation
// are errors.
func ExprString(e Expr) (string, error) {
	switch e := e.(type) {
	case *Match:
		op := ""
		if e.Neg {
			op = "!= "
		}
		if e.Field == CtState || e.Field == CtStatus {
			vals := make([]string, len(e.Values))
			for i, v := range e.Values {
				vals[i] = value(v)
			}
			return fmt.Sprintf("%s %s%s", e.Field, op, strings.Join(vals, ",")), nil
		}
		return fmt.Sprintf("%s %s%s", e.Field, op, values(e.Values)), nil
	case *TCPFlags:
		op := "=="
		if e.Neg {
			op = "!="
		}
		mask := flagNames(e.Mask)
		if strings.Contains(mask, " ") {
			mask = "(" + mask + ")"
		}
		return fmt.Sprintf("tcp flags & %s %s %s", mask, op, flagNames(e.Value)), nil
	case *Lookup:
		op := ""
		if e.Neg {
			op = "!= "
		}
		k, err := keyString(e.Key)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s@%s", k, op, e.Set), nil
	case *Dynset:
		switch e.Op {
		case Add, Update, Delete:
		default:
			return "", fmt.Errorf("dynset of set %s: unknown operation %q", e.Set, e.Op)
		}
		k, err := keyString(e.Key)
		if err != nil {
			return "", err
		}
		in := []string{k}
		if e.Timeout > 0 {
			in = append(in, "timeout "+nftDur(e.Timeout))
		}
		if e.Limit != nil {
			l, err := ExprString(e.Limit)
			if err != nil {
				return "", err
			}
			in = append(in, l)
		}
		if e.Connlimit != nil {
			l, err := ExprString(e.Connlimit)
			if err != nil {
				return "", err
			}
			in = append(in, l)
		}
		return fmt.Sprintf("%s @%s { %s }", e.Op, e.Set, strings.Join(in, " ")), nil
	case *Connlimit:
		if e.Over {
			return fmt.Sprintf("ct count over %d", e.Count), nil
		}
		return fmt.Sprintf("ct count %d", e.Count), nil
	case *Limit:
		over := ""
		if e.Over {
			over = "over "
		}
		unit, err := unitName(e.Unit)
		if err != nil {
			return "", err
		}
		s := fmt.Sprintf("limit rate %s%d/%s", over, e.Rate, unit)
		if e.Burst > 0 {
			s += fmt.Sprintf(" burst %d packets", e.Burst)
		}
		return s, nil
	case *Log:
		s := "log"
		if e.Prefix != "" {
			s += " prefix " + quote(e.Prefix)
		}
		if e.Level != "" {
			s += " level " + e.Level
		}
		return s, nil
	case *Counter:
		return "counter", nil
	case *NAT:
		a := e.Addr.Unmap()
		fam, addr := "ip", a.String()
		if a.Is6() {
			fam = "ip6"
			if e.Port != 0 {
				addr = "[" + addr + "]"
			}
		}
		if e.Port != 0 {
			addr += fmt.Sprintf(":%d", e.Port)
		}
		return fmt.Sprintf("dnat %s to %s", fam, addr), nil
	case *Verdict:
		switch e.Kind {
		case Jump, Goto:
			return fmt.Sprintf("%s %s", e.Kind, e.Chain), nil
		case Accept, Drop, Reject, RejectTCPReset, Return, Continue:
			return string(e.Kind), nil
		}
		return "", fmt.Errorf("unknown verdict %q", e.Kind)
	}
	return "", fmt.Errorf("unknown expression %T", e)
}

// tcpFlagNames are nft's names of the TCP flags, in the order of their bits.
var tcpFlagNames = [8]string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}

// flagNames writes TCP flags as nft reads them: "syn", "syn | ack", or
// 0x0 when none is set.
func flagNames(f uint8) string {
	var names []string
	for i, n := range tcpFlagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "0x0"
	}
	return strings.Join(names, " | ")
}

func keyString(k Key) (string, error) {
	switch k.Field {
	case IPSaddr, IP6Saddr, CtState:
	case Token:
		return string(Token), nil
	default:
		return "", fmt.Errorf("unknown set key %q", k.Field)
	}
	if k.Prefix <= 0 || k.Field == CtState {
		return string(k.Field), nil
	}
	bits := 32
	if k.Field == IP6Saddr || k.Field == IP6Daddr {
		bits = 128
	}
	if k.Prefix >= bits {
		return string(k.Field), nil
	}
	mask := netip.PrefixFrom(zeroAddr(bits), 0)
	b := mask.Addr().AsSlice()
	for i := 0; i < k.Prefix; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	m, _ := netip.AddrFromSlice(b)
	return fmt.Sprintf("%s and %s", k.Field, m), nil
}

func zeroAddr(bits int) netip.Addr {
	if bits == 32 {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func values(vs []any) string {
	if len(vs) == 1 {
		return value(vs[0])
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = value(v)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

func value(v any) string {
	switch v := v.(type) {
	case netip.Prefix:
		v = v.Masked()
		if v.Bits() == v.Addr().BitLen() {
			return v.Addr().String()
		}
		return v.String()
	case netip.Addr:
		return v.Unmap().String()
	case lang.Proto:
		return v.String()
	case string:
		return v
	}
	return fmt.Sprint(v)
}

func unitName(u time.Duration) (string, error) {
	switch u {
	case time.Second:
		return "second", nil
	case time.Minute:
		return "minute", nil
	case time.Hour:
		return "hour", nil
	case 24 * time.Hour:
		return "day", nil
	case 7 * 24 * time.Hour:
		return "week", nil
	}
	return "", fmt.Errorf("rate unit %s: nft knows second, minute, hour, day and week", u)
}

// nftDur writes a duration as nft reads it (1d2h3m4s500ms). nft keeps
// timeouts in milliseconds; Lower refuses a duration with a remainder
// below one (millis), so none reaches here but from a hand-built
// ruleset, where it rounds up.
func nftDur(d time.Duration) string {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	if ms <= 0 {
		return "1ms"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.n {
			fmt.Fprintf(&b, "%d%s", ms/u.n, u.name)
			ms %= u.n
		}
	}
	return b.String()
}

// quote writes a string as an nft quoted string; nft has no escapes, so a
// double quote becomes a single one.
func quote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `"`, `'`), "\n", " ") + `"`
}
