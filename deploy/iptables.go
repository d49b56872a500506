package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The iptables backend loads iptables-restore input with --noflush, so
// that only what the input names changes: kwl's own chains, declared in
// the input (`:kwl-input - [0:0]`), are created or flushed and refilled;
// the rules it appends to built-in chains (the jumps into kwl's chains)
// are taken out of the input and added once, if missing, at the head of
// the built-in chain; built-in chain declarations are taken out too, so
// that the host's policies stay as they are.
//
// Guarantees: each iptables-restore run commits its tables at once, but
// the IPv4 and IPv6 rulesets are two runs, and there is no rollback,
// dry run or confirmation. xt_recent lists are kept by the kernel while
// some rule uses them (net/netfilter/xt_recent.c, recent_mt_destroy frees
// a list with its last rule), and a restore adds the new rules before it
// drops the old ones, so lists the new ruleset still uses keep their
// entries.

// iptablesState records what a deploy added to built-in chains and which
// chains it owns, for undeploy.
type iptablesState struct {
	Families []iptablesFamily `json:"families"`
}

type iptablesFamily struct {
	Cmd    string      `json:"cmd"`    // iptables or ip6tables
	Chains [][2]string `json:"chains"` // table, chain
	Jumps  [][]string  `json:"jumps"`  // table, then the rule's words (-A CHAIN ...)
}

var builtin = map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true, "PREROUTING": true, "POSTROUTING": true}

// splitRestore separates iptables-restore input into what is loaded with
// --noflush and the rules on built-in chains.
func splitRestore(text string) (body string, f iptablesFamily, err error) {
	var out strings.Builder
	table := ""
	for n, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "*"):
			table = t[1:]
		case strings.HasPrefix(t, ":"):
			name := strings.Fields(t[1:])
			if len(name) > 0 && builtin[name[0]] {
				continue // the host's policy stays
			}
			if len(name) > 0 {
				f.Chains = append(f.Chains, [2]string{table, name[0]})
			}
		case strings.HasPrefix(t, "-A ") || strings.HasPrefix(t, "-I "):
			words, err := splitWords(t)
			if err != nil {
				return "", f, fmt.Errorf("line %d: %v", n+1, err)
			}
			if len(words) > 1 && builtin[words[1]] {
				f.Jumps = append(f.Jumps, append([]string{table}, words...))
				continue
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.String(), f, nil
}

// splitWords splits a rule line as iptables-restore does: on blanks,
// with double quotes grouping.
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

func (o *Options) command(name string, args ...string) *exec.Cmd {
	if o.NetNS != "" {
		return exec.Command("ip", append([]string{"netns", "exec", filepath.Base(o.NetNS), name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (o *Options) run(stdin string, name string, args ...string) error {
	cmd := o.command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func (o *Options) iptablesStateFile() string {
	return filepath.Join(o.stateDir(), "iptables"+o.suffix()+".json")
}

// ApplyIptables loads the iptables backend's rulesets (iptables-restore
// and ip6tables-restore input; either may be empty).
func ApplyIptables(ctx context.Context, o Options, v4, v6 string) error {
	if err := check(); err != nil {
		return err
	}
	release, err := lock(&o)
	if err != nil {
		return err
	}
	defer release()
	var st iptablesState
	for _, fam := range []struct{ cmd, text string }{{"iptables", v4}, {"ip6tables", v6}} {
		if strings.TrimSpace(fam.text) == "" {
			continue
		}
		body, f, err := splitRestore(fam.text)
		if err != nil {
			return fmt.Errorf("%s input: %w", fam.cmd, err)
		}
		f.Cmd = fam.cmd
		if err := o.run(body, fam.cmd+"-restore", "--noflush"); err != nil {
			return err
		}
		for _, j := range f.Jumps {
			table, rule := j[0], j[3:]
			check := append([]string{"-t", table, "-C", j[2]}, rule...)
			if o.run("", fam.cmd, check...) == nil {
				continue // installed by an earlier deploy
			}
			if err := o.run("", fam.cmd, append([]string{"-t", table, "-I", j[2], "1"}, rule...)...); err != nil {
				return err
			}
		}
		st.Families = append(st.Families, f)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(o.iptablesStateFile(), b, 0o644)
}

// UndeployIptables removes the jumps and chains the last iptables deploy
// added.
func UndeployIptables(ctx context.Context, o Options) error {
	if err := check(); err != nil {
		return err
	}
	release, err := lock(&o)
	if err != nil {
		return err
	}
	defer release()
	b, err := os.ReadFile(o.iptablesStateFile())
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no iptables deploy recorded in %s", o.iptablesStateFile())
	}
	if err != nil {
		return err
	}
	var st iptablesState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", o.iptablesStateFile(), err)
	}
	var errs []error
	for _, f := range st.Families {
		for _, j := range f.Jumps {
			if err := o.run("", f.Cmd, append([]string{"-t", j[0], "-D", j[2]}, j[3:]...)...); err != nil {
				errs = append(errs, err)
			}
		}
		for _, c := range f.Chains {
			o.run("", f.Cmd, "-t", c[0], "-F", c[1])
		}
		for _, c := range f.Chains {
			if err := o.run("", f.Cmd, "-t", c[0], "-X", c[1]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(o.iptablesStateFile())
}
