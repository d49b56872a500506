package iptables

import (
	"fmt"
	"net/netip"
	"strings"
)

// Render returns the IPv4 and IPv6 rulesets as iptables-restore and
// ip6tables-restore input for a first load, with --noflush, on a host
// that may hold other rules: kwl's chains are declared (":kwl-input -
// [0:0]"), which creates them or flushes only them, then filled; the
// builtin chains get their jumps into kwl's chains inserted at the top
// ("-I INPUT -j kwl-input"), before the host's own rules, so that a
// knock is seen even where the host's rules would drop it. Each table is
// one transaction (COMMIT).
//
// Loaded twice, it inserts the jumps twice: for a host where they are in
// place, use RenderReload.
//
// A rule with a target, recent operation or rate unit that iptables has
// no word for is an error (RuleString), never a guess.
func (r *Ruleset) Render() (v4, v6 string, err error) {
	return r.renderBoth(insertJumps)
}

// RenderReload is Render for a host where the jumps are in place: each
// jump is deleted and inserted again in the same transaction ("-D INPUT
// -j kwl-input", then "-I INPUT -j kwl-input"), so that loading it any
// number of times leaves one jump, and the jump is never missing. On a
// host without the jumps the -D fails, and iptables-restore stops before
// committing the table. A fixed text cannot do both: every -I adds a
// rule and every -D removes one, whatever the chain holds, so kwl deploy
// writes its input from the live rules instead.
func (r *Ruleset) RenderReload() (v4, v6 string, err error) {
	return r.renderBoth(replaceJumps)
}

// RenderChains is Render without the jumps from the builtin chains: it
// reloads kwl's own chains and nothing else.
func (r *Ruleset) RenderChains() (v4, v6 string, err error) {
	return r.renderBoth(noJumps)
}

// renderBoth renders both families in mode.
func (r *Ruleset) renderBoth(mode jumpMode) (v4, v6 string, err error) {
	if v4, err = r.V4.render(mode); err != nil {
		return "", "", err
	}
	if v6, err = r.V6.render(mode); err != nil {
		return "", "", err
	}
	return v4, v6, nil
}

// Jumps returns, per table, the rules of the builtin chains that lead
// into kwl's chains, as iptables arguments without the command
// ("INPUT -j kwl-input"), for a caller that checks (-C) and inserts (-I)
// them itself. A jump that cannot be written is an error (RuleString).
func (f *Family) Jumps() (map[string][]string, error) {
	out := map[string][]string{}
	if f == nil {
		return out, nil
	}
	for _, t := range f.Tables {
		for _, c := range t.Chains {
			if !c.Builtin {
				continue
			}
			for _, r := range c.Rules {
				s, err := RuleString(r, f.IPv6)
				if err != nil {
					return nil, fmt.Errorf("chain %s: %w", c.Name, err)
				}
				out[t.Name] = append(out[t.Name], c.Name+" "+s)
			}
		}
	}
	return out, nil
}

// jumpMode says what a rendering does with the jumps from the builtin
// chains.
type jumpMode int

const (
	noJumps      jumpMode = iota
	insertJumps           // -I CHAIN N
	replaceJumps          // -D, then -I CHAIN N
)

// Render returns the family's ruleset as restore input; with jumps, the
// jumps from the builtin chains are inserted too (Ruleset.Render).
func (f *Family) Render(jumps bool) (string, error) {
	if jumps {
		return f.render(insertJumps)
	}
	return f.render(noJumps)
}

// RenderReload returns the family's ruleset as restore input that
// replaces the jumps (Ruleset.RenderReload).
func (f *Family) RenderReload() (string, error) { return f.render(replaceJumps) }

func (f *Family) render(mode jumpMode) (string, error) {
	var b strings.Builder
	tool := "iptables-restore"
	if f != nil && f.IPv6 {
		tool = "ip6tables-restore"
	}
	fmt.Fprintf(&b, "# kwl: load with %s --noflush\n", tool)
	if f == nil {
		return b.String(), nil
	}
	// rule writes one rule of chain c of table t after cmd (-A, -D,
	// -I), keeping the first error.
	var err error
	rule := func(cmd string, t *Table, c *Chain, r *Rule) {
		if err != nil {
			return
		}
		var s string
		if s, err = RuleString(r, f.IPv6); err != nil {
			err = fmt.Errorf("table %s, chain %s: %w", t.Name, c.Name, err)
			return
		}
		fmt.Fprintf(&b, "%s %s %s\n", cmd, c.Name, s)
	}
	for _, t := range f.Tables {
		fmt.Fprintf(&b, "*%s\n", t.Name)
		for _, c := range t.Chains {
			if !c.Builtin {
				fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
			}
		}
		if mode == replaceJumps && t.hasJumps() {
			b.WriteString("# kwl: the jumps an earlier load inserted are deleted and inserted again;\n")
			b.WriteString("# kwl: where they are missing, iptables-restore stops here: load kwl compile --first once\n")
			for _, c := range t.Chains {
				if c.Builtin {
					for _, r := range c.Rules {
						rule("-D", t, c, r)
					}
				}
			}
		}
		for _, c := range t.Chains {
			if c.Builtin {
				continue
			}
			for _, r := range c.Rules {
				rule("-A", t, c, r)
			}
		}
		if mode != noJumps {
			for _, c := range t.Chains {
				if !c.Builtin {
					continue
				}
				// -I without a number inserts at the top: in reverse,
				// the rules keep their order.
				for i := len(c.Rules) - 1; i >= 0; i-- {
					rule("-I", t, c, c.Rules[i])
				}
			}
		}
		b.WriteString("COMMIT\n")
	}
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

func (t *Table) hasJumps() bool {
	for _, c := range t.Chains {
		if c.Builtin && len(c.Rules) > 0 {
			return true
		}
	}
	return false
}

// RuleString returns a rule's matches and target as iptables arguments.
// A target kind, recent operation or limit unit that iptables has no word
// for is an error.
func RuleString(r *Rule, v6 bool) (string, error) {
	var a []string
	add := func(s ...string) { a = append(a, s...) }
	if len(r.Src) > 0 {
		add("-s", prefixes(r.Src))
	}
	if len(r.Dst) > 0 {
		add("-d", prefixes(r.Dst))
	}
	if r.Proto != 0 {
		add("-p", r.Proto.String())
	}
	switch len(r.DPorts) {
	case 0:
	case 1:
		add("-m", r.Proto.String(), "--dport", fmt.Sprint(r.DPorts[0]))
	default:
		ps := make([]string, len(r.DPorts))
		for i, p := range r.DPorts {
			ps[i] = fmt.Sprint(p)
		}
		add("-m", "multiport", "--dports", strings.Join(ps, ","))
	}
	if r.TCPFlags != nil {
		// After a single --dport, its tcp match holds the flags too, as
		// iptables-save prints it.
		if len(r.DPorts) != 1 {
			add("-m", "tcp")
		}
		add(tcpFlagsArgs(r.TCPFlags)...)
	}
	if r.DstLocal {
		add("-m", "addrtype", "--dst-type", "LOCAL")
	}
	if len(r.CtState) > 0 || r.CtOrigDst.IsValid() || r.CtOrigDport != 0 {
		add("-m", "conntrack")
		if len(r.CtState) > 0 {
			add("--ctstate", strings.Join(r.CtState, ","))
		}
		if r.CtOrigDst.IsValid() {
			add("--ctorigdst", prefixes([]netip.Prefix{r.CtOrigDst}))
		}
		if r.CtOrigDport != 0 {
			add("--ctorigdstport", fmt.Sprint(r.CtOrigDport))
		}
	}
	if rc := r.Recent; rc != nil {
		add("-m", "recent")
		if rc.Invert {
			add("!")
		}
		switch rc.Op {
		case Set, Rcheck, Update, Remove:
		default:
			return "", fmt.Errorf("unknown recent operation %q", rc.Op)
		}
		add(string(rc.Op))
		if rc.Seconds > 0 {
			add("--seconds", fmt.Sprint(rc.Seconds))
		}
		if rc.Hitcount > 0 {
			add("--hitcount", fmt.Sprint(rc.Hitcount))
		}
		if rc.Reap {
			add("--reap")
		}
		add("--name", rc.Name)
		if rc.Shared {
			add("--mask", maskString(0, v6))
		} else if rc.Mask > 0 {
			add("--mask", maskString(rc.Mask, v6))
		}
		add("--rsource")
	}
	if cl := r.Connlimit; cl != nil {
		// As iptables-save prints it.
		add("-m", "connlimit", "--connlimit-above", fmt.Sprint(cl.Above), "--connlimit-mask", fmt.Sprint(cl.Mask), "--connlimit-saddr")
	}
	if l := r.Limit; l != nil {
		switch l.Unit {
		case "second", "minute", "hour", "day":
		default:
			return "", fmt.Errorf("limit unit %q: iptables knows second, minute, hour and day", l.Unit)
		}
		add("-m", "limit", "--limit", fmt.Sprintf("%d/%s", l.Rate, l.Unit))
		if l.Burst > 0 {
			add("--limit-burst", fmt.Sprint(l.Burst))
		}
	}
	if r.Comment != "" {
		add("-m", "comment", "--comment", quote(r.Comment))
	}
	t := r.Target
	switch t.Kind {
	case NONE:
	case JUMP:
		add("-j", t.Chain)
	case LOG:
		add("-j", "LOG")
		if t.LogPrefix != "" {
			add("--log-prefix", quote(t.LogPrefix))
		}
		if t.LogLevel != "" {
			add("--log-level", t.LogLevel)
		}
	case DNAT:
		to := t.ToDest.Unmap().String()
		if t.ToPort != 0 {
			if t.ToDest.Unmap().Is6() {
				to = "[" + to + "]"
			}
			to += fmt.Sprintf(":%d", t.ToPort)
		}
		add("-j", "DNAT", "--to-destination", to)
	case REJECT:
		add("-j", "REJECT")
		if t.RejectWith != "" {
			add("--reject-with", t.RejectWith)
		}
	case ACCEPT, DROP, RETURN:
		add("-j", string(t.Kind))
	default:
		return "", fmt.Errorf("unknown target %q", t.Kind)
	}
	return strings.Join(a, " "), nil
}

// tcpFlagNames are iptables' names of the TCP flags, in the order of
// their bits.
var tcpFlagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// tcpFlagsArgs writes --tcp-flags MASK COMP ("--tcp-flags SYN,ACK SYN").
func tcpFlagsArgs(f *TCPFlags) []string {
	names := func(b uint8) string {
		var ns []string
		for i, n := range tcpFlagNames {
			if b&(1<<i) != 0 {
				ns = append(ns, n)
			}
		}
		if len(ns) == 0 {
			return "NONE"
		}
		return strings.Join(ns, ",")
	}
	a := []string{"--tcp-flags", names(uint8(f.Mask)), names(uint8(f.Comp))}
	if f.Invert {
		a = append([]string{"!"}, a...)
	}
	return a
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		p = p.Masked()
		if p.Bits() == p.Addr().BitLen() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return strings.Join(s, ",")
}

// maskString writes a prefix length as the address --mask takes.
func maskString(bits int, v6 bool) string {
	n := 4
	if v6 {
		n = 16
	}
	b := make([]byte, n)
	for i := 0; i < bits && i < n*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a.String()
}

// quote writes a string for iptables-restore, which splits on spaces
// outside double quotes and knows no escapes.
func quote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `"`, `'`), "\n", " ") + `"`
}
