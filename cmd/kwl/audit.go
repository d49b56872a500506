package main

import (
	"encoding/json"
	"fmt"

	"kwl.dev/kwl/audit"
	"kwl.dev/kwl/lang"
)

func runAudit(env *cmdEnv, args []string) int {
	c := commands["audit"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "", "attack the `nft` or iptables simulator only (default both)")
	format := fs.String("format", "text", "findings as `text` or json")
	trials := fs.Int("trials", 1000, "scanners for each random order")
	seed := fs.Uint64("seed", 1, "seed of the random orders: the same seed, the same findings")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	backends, err := backendFlag(*backend)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl audit: %v\n", err)
		return exitUsage
	}
	if *format != "text" && *format != "json" || *trials <= 0 || fs.NArg() == 0 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help audit' for more.\n", c.usage)
		return exitUsage
	}
	code := exitOK
	all := []jsonFinding{}
	for _, name := range fs.Args() {
		pol, c := loadPolicy(env, "audit", name)
		if pol == nil {
			code = max(code, c)
			continue
		}
		found, err := auditPolicy(pol, backends, *trials, *seed)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl audit: %s: %v\n", name, err)
			code = max(code, exitFail)
		}
		for _, f := range found {
			if f.Fails() {
				code = max(code, exitFail)
			}
			if *format == "json" {
				all = append(all, jsonFinding{Rule: f.Ref.Pos.String(), Service: f.Service, Backend: f.Backend, Effect: string(f.Effect), Attack: f.Attack,
					Opened: f.Opened, Low: f.Low, High: f.High, Reached: f.Reached, Trials: f.Trials, Hint: f.Hint})
				continue
			}
			writeFinding(env, f)
		}
	}
	if *format == "json" {
		b, _ := json.MarshalIndent(all, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
	}
	return code
}

// auditPolicy runs every attack against pol on each backend.
func auditPolicy(pol *lang.Policy, backends []string, trials int, seed uint64) ([]audit.Finding, error) {
	var found []audit.Finding
	for _, b := range backends {
		o := audit.Options{Backend: b, Trials: trials, Seed: seed}
		for _, attack := range []func(*lang.Policy, audit.Options) ([]audit.Finding, error){audit.Scans, audit.Spoofing, audit.Exhaustion} {
			fs, err := attack(pol, o)
			if err != nil {
				return found, err
			}
			found = append(found, fs...)
		}
	}
	return found, nil
}

// jsonFinding is a finding as kwl audit --format json prints it.
type jsonFinding struct {
	Rule    string  `json:"rule"`
	Service string  `json:"service"`
	Backend string  `json:"backend"`
	Effect  string  `json:"effect"` // opens, closes or bans
	Attack  string  `json:"attack"`
	Opened  float64 `json:"opened"`
	Low     float64 `json:"opened_low"`
	High    float64 `json:"opened_high"`
	Reached float64 `json:"reached"`
	Trials  int     `json:"trials"`
	Hint    string  `json:"hint,omitempty"`
}

// writeFinding writes one finding as a line (and its hint).
func writeFinding(env *cmdEnv, f audit.Finding) {
	head := fmt.Sprintf("%s: knock %s (%s): %s", f.Ref.Pos, f.Service, f.Backend, f.Attack)
	switch {
	case f.Effect == audit.Closes:
		fmt.Fprintf(env.stdout, "%s: %s (%s): %s (denial of service)\n", f.Ref.Pos, f.Service, f.Backend, f.Attack)
	case f.Effect == audit.Bans:
		fmt.Fprintf(env.stdout, "%s: limit %s (%s): %s BAN the victim, which sent nothing\n", f.Ref.Pos, f.Service, f.Backend, f.Attack)
	case f.Trials == 1 && f.Fails():
		fmt.Fprintf(env.stdout, "%s: OPENS %s for the scanner\n", head, f.Service)
	case f.Trials == 1:
		fmt.Fprintf(env.stdout, "%s: closed\n", head)
	case f.Fails():
		fmt.Fprintf(env.stdout, "%s: OPENS %s for %.1f%% of %d scanners (95%%: %.1f%%-%.1f%%); %.1f%% reach it during the scan\n",
			head, f.Service, 100*f.Opened, f.Trials, 100*f.Low, 100*f.High, 100*f.Reached)
	default:
		fmt.Fprintf(env.stdout, "%s: closed for all %d scanners (95%%: below %.2f%%)\n", head, f.Trials, 100*f.High)
	}
	if f.Hint != "" {
		fmt.Fprintf(env.stdout, "    hint: %s\n", f.Hint)
	}
}
