package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kwl.dev/kwl/audit"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

func runAudit(env *cmdEnv, args []string) int {
	c := commands["audit"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "", "attack the `nft` or iptables simulator only (default both)")
	format := fs.String("format", "text", "findings as `text` or json")
	trials := fs.Int("trials", 1000, "scanners for each random order")
	seed := fs.Uint64("seed", 1, "seed of the random orders: the same seed, the same findings")
	rate := fs.Int("rate", 1000, "a scan's probes per second")
	services := fs.String("nmap-services", defaultServices, "scan the most common ports of `FILE` (nmap's table), in random order, as nmap does by default; none: no such scan")
	top := fs.Int("top-ports", 1000, "how many of the most common ports that scan probes")
	emit := fs.String("emit", "", "write each attack that had its effect as a pcap file in `DIR`, for kwl sim")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	backends, err := backendFlag(*backend)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl audit: %v\n", err)
		return exitUsage
	}
	if *format != "text" && *format != "json" || *trials <= 0 || *rate <= 0 || *top <= 0 || fs.NArg() == 0 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help audit' for more.\n", c.usage)
		return exitUsage
	}
	common, err := commonPorts(*services, *top)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl audit: %v\n", err)
		return exitFail
	}
	code := exitOK
	all := []jsonFinding{}
	for _, name := range fs.Args() {
		pol, c := loadPolicy(env, "audit", name)
		if pol == nil {
			code = max(code, c)
			continue
		}
		o := audit.Options{Trials: *trials, Seed: *seed, Rate: time.Second / time.Duration(*rate), Common: common, Keep: *emit != ""}
		found, err := auditPolicy(pol, backends, o)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl audit: %s: %v\n", name, err)
			code = max(code, exitFail)
		}
		var shown []*shownFinding
		byKey := map[string]*shownFinding{}
		nth := map[string]int{} // of the pcaps of one statement, backend and effect
		for _, f := range found {
			if f.Fails() {
				code = max(code, exitFail)
			}
			pcap := ""
			if *emit != "" && len(f.Packets) > 0 {
				stem := fmt.Sprintf("%s-%d-%s-%s", strings.TrimSuffix(filepath.Base(name), ".kwl"), f.Ref.Pos.Line, f.Backend, f.Effect)
				nth[stem]++
				pcap = filepath.Join(*emit, fmt.Sprintf("%s-%d.pcap", stem, nth[stem]))
				if err := writeAttack(pcap, f.Packets); err != nil {
					fmt.Fprintf(env.stderr, "kwl audit: %v\n", err)
					return exitFail
				}
			}
			if *format == "json" {
				all = append(all, jsonFinding{Rule: f.Ref.Pos.String(), Statement: f.Statement, Service: f.Service, Backend: f.Backend, Effect: string(f.Effect), Attack: f.Attack,
					Opened: f.Opened, Low: f.Low, High: f.High, Reached: f.Reached, Trials: f.Trials, Cost: f.Cost, Hint: f.Hint, Capture: pcap})
				continue
			}
			// The same finding on several backends is shown once.
			key := fmt.Sprint(f.Ref.Pos, f.Attack, f.Effect, f.Opened, f.Low, f.High, f.Reached, f.Trials, f.Hint)
			sf := byKey[key]
			if sf == nil {
				sf = &shownFinding{f: f}
				byKey[key] = sf
				shown = append(shown, sf)
			}
			sf.backends = append(sf.backends, f.Backend)
			if pcap != "" {
				sf.pcaps = append(sf.pcaps, pcap)
			}
		}
		for _, sf := range shown {
			writeFinding(env.stdout, sf.f, sf.backends)
			for _, pcap := range sf.pcaps {
				fmt.Fprintf(env.stdout, "    capture: %s\n", pcap)
			}
		}
	}
	if *format == "json" {
		b, _ := json.MarshalIndent(all, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
	}
	return code
}

// defaultServices is where nmap's table of port frequencies lives, when
// nmap is installed.
const defaultServices = "/usr/share/nmap/nmap-services"

// commonPorts reads the top most common ports of nmap's table at path
// (none: no table). Without nmap installed (no file at the default path),
// there are none, and the audit leaves the scan of common ports out.
func commonPorts(path string, top int) ([]lang.Port, error) {
	if path == "none" || path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, iofs.ErrNotExist) && path == defaultServices {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps, err := audit.ReadServices(f, top)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return ps, nil
}

// auditPolicy runs every attack against pol on each backend.
func auditPolicy(pol *lang.Policy, backends []string, o audit.Options) ([]audit.Finding, error) {
	var found []audit.Finding
	for _, b := range backends {
		o.Backend = b
		fs, err := audit.Run(pol, o)
		found = append(found, fs...)
		if err != nil {
			return found, err
		}
	}
	return found, nil
}

// writeAttack writes an attack's packets as the pcap file name, the
// firewall's addresses those of kwl audit (kwl sim --host 198.51.100.1).
func writeAttack(name string, pkts []capture.Packet) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	w, err := capture.NewWriter(bw, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := 0; err == nil && i < len(pkts); i++ {
		err = w.Write(&pkts[i])
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// jsonFinding is a finding as kwl audit --format json prints it.
type jsonFinding struct {
	Rule      string  `json:"rule"`
	Statement string  `json:"statement"` // knock, close or limit
	Service   string  `json:"service"`
	Backend   string  `json:"backend"`
	Effect    string  `json:"effect"` // opens, closes or bans
	Attack    string  `json:"attack"`
	Opened    float64 `json:"opened"`
	Low       float64 `json:"opened_low"`
	High      float64 `json:"opened_high"`
	Reached   float64 `json:"reached"`
	Trials    int     `json:"trials"`
	Cost      float64 `json:"cost,omitempty"` // a guess's packets on average
	Hint      string  `json:"hint,omitempty"`
	Capture   string  `json:"capture,omitempty"` // the pcap file --emit wrote
}

// A shownFinding is a finding as the text shows it: once for the
// backends it holds on, with the captures --emit wrote of it.
type shownFinding struct {
	f        audit.Finding
	backends []string
	pcaps    []string
}

// writeFinding writes one finding, which holds on backends, as a line
// (and its hint).
func writeFinding(w io.Writer, f audit.Finding, backends []string) {
	head := fmt.Sprintf("%s: %s %s (%s): %s", f.Ref.Pos, f.Statement, f.Service, strings.Join(backends, ", "), f.Attack)
	switch {
	case f.Effect == audit.Guessed:
		fmt.Fprintf(w, "%s\n", head)
	case f.Effect == audit.Replays && f.Opened == 0:
		fmt.Fprintf(w, "%s: fixed: a token opens once, so its copy opens nothing\n", head)
	case f.Effect == audit.Replays && strings.Contains(f.Attack, "token"):
		fmt.Fprintf(w, "%s: OPENS %s for the sender of the copy\n", head, f.Service)
	case f.Effect == audit.Replays:
		fmt.Fprintf(w, "%s (replay: every static sequence can be)\n", head)
	case f.Effect == audit.Closes:
		fmt.Fprintf(w, "%s (denial of service)\n", head)
	case f.Effect == audit.Bans:
		fmt.Fprintf(w, "%s BAN the victim, which sent nothing\n", head)
	case f.Trials == 1 && f.Fails():
		fmt.Fprintf(w, "%s: OPENS %s for the scanner\n", head, f.Service)
	case f.Trials == 1:
		fmt.Fprintf(w, "%s: closed\n", head)
	case f.Fails():
		fmt.Fprintf(w, "%s: OPENS %s for %.1f%% of %d scanners (95%%: %.1f%%-%.1f%%); %.1f%% reach it during the scan\n",
			head, f.Service, 100*f.Opened, f.Trials, 100*f.Low, 100*f.High, 100*f.Reached)
	default:
		fmt.Fprintf(w, "%s: closed for all %d scanners (95%%: below %.2f%%)\n", head, f.Trials, 100*f.High)
	}
	if f.Hint != "" {
		fmt.Fprintf(w, "    hint: %s\n", f.Hint)
	}
}
