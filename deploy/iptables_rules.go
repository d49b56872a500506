//go:build linux

package deploy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"kwl.dev/kwl/compile/iptables"
)

// ChainPrefix starts the name of every iptables chain kwl owns.
const ChainPrefix = "kwl-"

// IptablesFamily is kwl's part of one family's iptables rules: its
// chains and the jumps into them from the builtin chains, table by table,
// as iptables-save prints them. It is both what a deploy loads and what
// a snapshot for a rollback keeps.
type IptablesFamily struct {
	// Cmd is iptables or ip6tables.
	Cmd    string           `json:"cmd"`
	Tables []*IptablesTable `json:"tables"`
	// keeper is set when the live rules hold the chain kwl-keep
	// (keepChain), which is no part of any policy.
	keeper bool
}

// IptablesTable is kwl's part of one table (filter, nat, ...).
type IptablesTable struct {
	Name   string          `json:"name"`
	Chains []IptablesChain `json:"chains"`
	// Jumps are the rules of builtin chains whose target is one of kwl's
	// chains, in their order.
	Jumps []IptablesJump `json:"jumps"`
	// foreign lists the rules of the host's own chains that jump into
	// kwl's chains: kwl cannot delete a chain they use.
	foreign []IptablesJump
}

// IptablesChain is one of kwl's chains and its rules.
type IptablesChain struct {
	Name  string         `json:"name"`
	Rules []IptablesRule `json:"rules"`
}

// IptablesRule is a rule: its matches and target as iptables arguments
// (what follows "-A CHAIN"), and its counters when read from the kernel.
type IptablesRule struct {
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// IptablesJump is a rule of a builtin chain that leads into kwl's chains.
type IptablesJump struct {
	Chain string `json:"chain"`
	Rule  string `json:"rule"`
}

func (f *IptablesFamily) table(name string) *IptablesTable {
	if f == nil {
		return nil
	}
	for _, t := range f.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func (f *IptablesFamily) hasKeeper() bool { return f != nil && f.keeper }

// empty reports whether the family holds none of kwl's chains or jumps.
func (f *IptablesFamily) empty() bool {
	if f == nil {
		return true
	}
	for _, t := range f.Tables {
		if len(t.Chains) > 0 || len(t.Jumps) > 0 {
			return false
		}
	}
	return true
}

// familyOf converts a compiled family into what a deploy loads. A rule
// that cannot be written as iptables arguments is an error
// (iptables.RuleString).
func familyOf(cmd string, f *iptables.Family) (*IptablesFamily, error) {
	out := &IptablesFamily{Cmd: cmd}
	if f == nil {
		return out, nil
	}
	for _, t := range f.Tables {
		tab := &IptablesTable{Name: t.Name}
		for _, c := range t.Chains {
			if c.Builtin {
				for _, r := range c.Rules {
					s, err := iptables.RuleString(r, f.IPv6)
					if err != nil {
						return nil, fmt.Errorf("%s: table %s, chain %s: %w", cmd, t.Name, c.Name, err)
					}
					tab.Jumps = append(tab.Jumps, IptablesJump{Chain: c.Name, Rule: s})
				}
				continue
			}
			ch := IptablesChain{Name: c.Name}
			for _, r := range c.Rules {
				s, err := iptables.RuleString(r, f.IPv6)
				if err != nil {
					return nil, fmt.Errorf("%s: table %s, chain %s: %w", cmd, t.Name, c.Name, err)
				}
				ch.Rules = append(ch.Rules, IptablesRule{Rule: s})
			}
			tab.Chains = append(tab.Chains, ch)
		}
		out.Tables = append(out.Tables, tab)
	}
	return out, nil
}

// parseSave reads `iptables-save -c` output and keeps kwl's part: the
// chains named kwl-*, and the rules of builtin chains (those with a
// policy) that jump or go to one of them.
func parseSave(cmd, text string) (*IptablesFamily, error) {
	f := &IptablesFamily{Cmd: cmd}
	var tab *IptablesTable
	builtin := map[string]bool{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		var pk, by uint64
		if strings.HasPrefix(line, "[") {
			// "[packets:bytes] -A CHAIN ..."
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s-save line %d: unterminated counters", cmd, n+1)
			}
			p, b, _ := strings.Cut(line[1:end], ":")
			pk, _ = strconv.ParseUint(p, 10, 64)
			by, _ = strconv.ParseUint(b, 10, 64)
			line = strings.TrimSpace(line[end+1:])
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			tab = &IptablesTable{Name: line[1:]}
			f.Tables = append(f.Tables, tab)
			builtin = map[string]bool{}
		case tab == nil:
			return nil, fmt.Errorf("%s-save line %d: %q outside a table", cmd, n+1, line)
		case strings.HasPrefix(line, ":"):
			w := strings.Fields(line[1:])
			if len(w) < 2 {
				return nil, fmt.Errorf("%s-save line %d: bad chain %q", cmd, n+1, line)
			}
			switch {
			case w[1] != "-":
				builtin[w[0]] = true
			case w[0] == keepChain:
				f.keeper = true
			case strings.HasPrefix(w[0], ChainPrefix):
				tab.Chains = append(tab.Chains, IptablesChain{Name: w[0]})
			}
		case strings.HasPrefix(line, "-A "):
			chain, rule, _ := strings.Cut(line[3:], " ")
			if strings.HasPrefix(chain, ChainPrefix) {
				// kwl-keep's rules are not kept: it is not in Chains.
				for i := range tab.Chains {
					if tab.Chains[i].Name == chain {
						tab.Chains[i].Rules = append(tab.Chains[i].Rules, IptablesRule{Rule: rule, Packets: pk, Bytes: by})
					}
				}
				continue
			}
			target, err := ruleTarget(rule)
			if err != nil {
				return nil, fmt.Errorf("%s-save line %d: %v", cmd, n+1, err)
			}
			if !strings.HasPrefix(target, ChainPrefix) {
				continue
			}
			j := IptablesJump{Chain: chain, Rule: rule}
			if builtin[chain] {
				tab.Jumps = append(tab.Jumps, j)
			} else {
				tab.foreign = append(tab.foreign, j)
			}
		default:
			return nil, fmt.Errorf("%s-save line %d: unexpected %q", cmd, n+1, line)
		}
	}
	return f, nil
}

// ruleTarget returns the chain a rule jumps (-j) or goes (-g) to.
func ruleTarget(rule string) (string, error) {
	w, err := splitWords(rule)
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(w); i++ {
		if w[i] == "-j" || w[i] == "-g" || w[i] == "--jump" || w[i] == "--goto" {
			return w[i+1], nil
		}
	}
	return "", nil
}

// splitWords splits a rule as iptables-restore does: on blanks, with
// double quotes grouping.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQ, have = !inQ, true
		case (c == ' ' || c == '\t') && !inQ:
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQ {
		return nil, errors.New("unterminated quote")
	}
	if have {
		words = append(words, cur.String())
	}
	return words, nil
}

// tableNames returns the tables of cur and want, want's first, in order.
func tableNames(cur, want *IptablesFamily) []string {
	var names []string
	seen := map[string]bool{}
	for _, f := range []*IptablesFamily{want, cur} {
		if f == nil {
			continue
		}
		for _, t := range f.Tables {
			if !seen[t.Name] {
				seen[t.Name] = true
				names = append(names, t.Name)
			}
		}
	}
	return names
}

// transaction returns iptables-restore --noflush input that turns kwl's
// part of the live rules (cur) into want, and nothing else: per table,
// kwl's chains are declared (created, or flushed), the old jumps deleted,
// the new chains filled, the new jumps inserted at the top of their
// builtin chains in order, and the chains want no longer has deleted.
// Each table is one commit. It is "" when neither has any of kwl's rules.
//
// It refuses to delete a chain that a chain of the host jumps to.
func transaction(cur, want *IptablesFamily) (string, error) {
	var b strings.Builder
	for _, name := range tableNames(cur, want) {
		ct, wt := cur.table(name), want.table(name)
		if ct == nil {
			ct = &IptablesTable{Name: name}
		}
		if wt == nil {
			wt = &IptablesTable{Name: name}
		}
		if len(ct.Chains)+len(ct.Jumps)+len(wt.Chains)+len(wt.Jumps) == 0 {
			continue
		}
		keep := map[string]bool{}
		for _, c := range wt.Chains {
			keep[c.Name] = true
		}
		for _, j := range ct.foreign {
			target, _ := ruleTarget(j.Rule)
			if !keep[target] {
				return "", fmt.Errorf("%s table %s: chain %s jumps to kwl's chain %s (-A %s %s); kwl changes no chain of the host: delete that rule first",
					cur.Cmd, name, j.Chain, target, j.Chain, j.Rule)
			}
		}
		fmt.Fprintf(&b, "*%s\n", name)
		var gone []string
		for _, c := range wt.Chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
		}
		for _, c := range ct.Chains {
			if !keep[c.Name] {
				fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
				gone = append(gone, c.Name)
			}
		}
		for _, j := range ct.Jumps {
			fmt.Fprintf(&b, "-D %s %s\n", j.Chain, j.Rule)
		}
		for _, c := range wt.Chains {
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "-A %s %s\n", c.Name, r.Rule)
			}
		}
		at := map[string]int{}
		for _, j := range wt.Jumps {
			at[j.Chain]++
			fmt.Fprintf(&b, "-I %s %d %s\n", j.Chain, at[j.Chain], j.Rule)
		}
		for _, c := range gone {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	return b.String(), nil
}

// normRules returns the rules iptables makes of rule, as iptables-save
// would print them, in words joined by NULs: one rule per address of a
// -s or -d list (sources first), without the /32 or /128 of a single
// address or the --mask of a whole address that iptables-save adds.
func normRules(rule string) []string {
	w, err := splitWords(rule)
	if err != nil {
		return []string{rule}
	}
	var out []string
	for i := 0; i < len(w); i++ {
		if i+1 < len(w) {
			switch w[i] {
			case "--mask":
				if w[i+1] == "255.255.255.255" || w[i+1] == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" {
					i++
					continue
				}
			case "--limit":
				n, unit, _ := strings.Cut(w[i+1], "/")
				if u, ok := limitUnits[unit]; ok {
					out = append(out, w[i], n+"/"+u)
					i++
					continue
				}
			case "--log-level":
				if l, ok := logLevels[w[i+1]]; ok {
					out = append(out, w[i], l)
					i++
					continue
				}
			}
		}
		out = append(out, w[i])
	}
	rules := [][]string{out}
	for _, flag := range []string{"-s", "-d"} {
		var next [][]string
		for _, r := range rules {
			at := -1
			for i := 0; i+1 < len(r); i++ {
				if r[i] == flag && (i == 0 || r[i-1] != "!") {
					at = i + 1
					break
				}
			}
			if at < 0 {
				next = append(next, r)
				continue
			}
			for _, a := range strings.Split(r[at], ",") {
				a = strings.TrimSuffix(strings.TrimSuffix(a, "/32"), "/128")
				c := append([]string(nil), r...)
				c[at] = a
				next = append(next, c)
			}
		}
		rules = next
	}
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = strings.Join(r, "\x00")
	}
	return s
}

// limitUnits and logLevels are how iptables-save prints a limit's unit
// and a LOG level.
var (
	limitUnits = map[string]string{"s": "sec", "sec": "sec", "second": "sec", "m": "min", "min": "min", "minute": "min", "h": "hour", "hour": "hour", "d": "day", "day": "day"}
	logLevels  = map[string]string{"emerg": "0", "alert": "1", "crit": "2", "err": "3", "error": "3", "warning": "4", "warn": "4", "notice": "5", "info": "6", "debug": "7"}
)

// normRule is normRules of a rule, joined.
func normRule(rule string) string { return strings.Join(normRules(rule), "\n") }

// changes describes, one line each, what turning cur into want changes.
func changes(cur, want *IptablesFamily) []string {
	var out []string
	for _, name := range tableNames(cur, want) {
		ct, wt := cur.table(name), want.table(name)
		if ct == nil {
			ct = &IptablesTable{}
		}
		if wt == nil {
			wt = &IptablesTable{}
		}
		where := want.Cmd + " " + name
		old := map[string]IptablesChain{}
		for _, c := range ct.Chains {
			old[c.Name] = c
		}
		for _, c := range wt.Chains {
			o, ok := old[c.Name]
			delete(old, c.Name)
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s: + chain %s (%s)", where, c.Name, rules(len(c.Rules))))
			case !sameRules(o.Rules, c.Rules):
				out = append(out, fmt.Sprintf("%s: ~ chain %s (%s, was %s)", where, c.Name, rules(len(c.Rules)), rules(len(o.Rules))))
			}
		}
		var gone []string
		for n := range old {
			gone = append(gone, n)
		}
		sort.Strings(gone)
		for _, n := range gone {
			out = append(out, fmt.Sprintf("%s: - chain %s (%s)", where, n, rules(len(old[n].Rules))))
		}
		had := map[string]int{}
		for _, j := range ct.Jumps {
			had[j.Chain+" "+normRule(j.Rule)]++
		}
		for _, j := range wt.Jumps {
			k := j.Chain + " " + normRule(j.Rule)
			if had[k] > 0 {
				had[k]--
				continue
			}
			out = append(out, fmt.Sprintf("%s: + jump -A %s %s", where, j.Chain, j.Rule))
		}
		for _, j := range ct.Jumps {
			k := j.Chain + " " + normRule(j.Rule)
			if had[k] > 0 {
				had[k]--
				out = append(out, fmt.Sprintf("%s: - jump -A %s %s", where, j.Chain, j.Rule))
			}
		}
	}
	return out
}

// sameRules reports whether the live rules a are what loading the rules
// b gives.
func sameRules(a, b []IptablesRule) bool {
	var na, nb []string
	for _, r := range a {
		na = append(na, normRules(r.Rule)...)
	}
	for _, r := range b {
		nb = append(nb, normRules(r.Rule)...)
	}
	return slices.Equal(na, nb)
}

func rules(n int) string {
	if n == 1 {
		return "1 rule"
	}
	return fmt.Sprintf("%d rules", n)
}

// recentNames returns the xt_recent lists the family's rules use.
// recentSeconds returns, for each xt_recent list the family's rules use,
// the longest --seconds any of its rules checks: how long an entry
// matters after its source was last seen (0 when no rule says).
func recentSeconds(f *IptablesFamily) map[string]int {
	secs := map[string]int{}
	if f == nil {
		return secs
	}
	for _, t := range f.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				w, _ := splitWords(r.Rule)
				name, n := "", 0
				for i := 0; i+1 < len(w); i++ {
					switch w[i] {
					case "--name":
						name = w[i+1]
					case "--seconds":
						n, _ = strconv.Atoi(w[i+1])
					}
				}
				if name != "" && n > secs[name] {
					secs[name] = n
				}
			}
		}
	}
	return secs
}

func recentNames(f *IptablesFamily) map[string]bool {
	names := map[string]bool{}
	if f == nil {
		return names
	}
	for _, t := range f.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				w, _ := splitWords(r.Rule)
				for i := 0; i+1 < len(w); i++ {
					if w[i] == "--name" {
						names[w[i+1]] = true
					}
				}
			}
		}
	}
	return names
}

// keepChain is a chain that no rule jumps to, whose rules use the recent
// lists of kwl's live rules while a change is under way, so that the
// kernel keeps them (and their entries) between the commits of the
// change and until a rollback can no longer be needed.
const keepChain = "kwl-keep"

// keeperInput returns restore input that loads keepChain with one rule
// per recent list the families' rules use, or "" when they use none.
// Each rule asks for as many stamps as the list's most demanding rule
// (--hitcount), since a rule that wants a larger ring makes the kernel
// flush the list (and with neither, the ring has 32 stamps).
func keeperInput(fams [2]*IptablesFamily) string {
	hits := map[string]int{}
	var names []string
	for _, f := range fams {
		if f == nil {
			continue
		}
		for _, t := range f.Tables {
			for _, c := range t.Chains {
				for _, r := range c.Rules {
					w, _ := splitWords(r.Rule)
					name, hit, recent := "", 0, false
					for i := 0; i < len(w); i++ {
						switch {
						case w[i] == "recent" && i > 0 && w[i-1] == "-m":
							recent = true
						case w[i] == "--name" && i+1 < len(w):
							name = w[i+1]
						case w[i] == "--hitcount" && i+1 < len(w):
							hit, _ = strconv.Atoi(w[i+1])
						}
					}
					if !recent || name == "" {
						continue
					}
					if _, ok := hits[name]; !ok {
						names = append(names, name)
					}
					hits[name] = max(hits[name], hit)
				}
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", keepChain)
	for _, n := range names {
		hit := ""
		if hits[n] > 0 {
			hit = fmt.Sprintf(" --hitcount %d", hits[n])
		}
		fmt.Fprintf(&b, "-A %s -m recent --rcheck%s --name %s --rsource -m comment --comment \"keeps the list while kwl changes its rules\"\n", keepChain, hit, n)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// dropKeeperInput is restore input that deletes keepChain.
var dropKeeperInput = fmt.Sprintf("*filter\n:%s - [0:0]\n-X %s\nCOMMIT\n", keepChain, keepChain)
