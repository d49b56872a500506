package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
	"kwl.dev/kwl/sim/report"
)

// This file is kwl sim --compare OLD NEW TRACE: the capture replayed
// through two policies in one pass, each with its own simulator and
// blocked flows, reporting the packets whose verdict differs and the
// sources whose access differs.

// loadSimPolicy loads a policy and its simulator for kwl sim; code >= 0
// means stop with that exit status.
func loadSimPolicy(env *cmdEnv, name, backend string, opts sim.Options) (*lang.Policy, replay.Engine, int) {
	src, err := readSource(env, name)
	if err != nil {
		return nil, nil, ioError(env, "sim", err)
	}
	pol, diags := lang.Load(name, src)
	printDiags(env, diags, map[string][]byte{name: src})
	if diags.HasErrors() {
		return nil, nil, exitFail
	}
	eng, code := simEngine(env, name, src, pol, diags, backend, opts)
	return pol, eng, code
}

// simOptions are kwl sim's simulator options: the secret knocks' tokens
// come from their secret files, as the deployed ruleset's do, or from
// the one file --secret names.
func simOptions(hosts []netip.Addr, secretFile string) sim.Options {
	read := secret.Read
	if secretFile != "" {
		read = func(string) ([]byte, error) { return secret.Read(secretFile) }
	}
	return sim.Options{Hosts: hosts, Secret: read}
}

// simEngine builds the simulator of a loaded policy and prints the
// backend's diagnostics but those of the load (diags), which they repeat,
// and those a kwl:ignore comment silences; code >= 0 means stop with that
// exit status.
func simEngine(env *cmdEnv, name string, src []byte, pol *lang.Policy, diags lang.Diagnostics, backend string, opts sim.Options) (replay.Engine, int) {
	eng, bdiags := replay.NewEngine(backend, pol, opts)
	seen := map[lang.Diagnostic]bool{}
	for _, d := range diags {
		seen[d] = true
	}
	var extra lang.Diagnostics
	for _, d := range pol.Filter(bdiags) {
		if !seen[d] {
			extra = append(extra, d)
		}
	}
	printDiags(env, extra, map[string][]byte{name: src})
	if bdiags.HasErrors() {
		return nil, exitFail
	}
	return eng, -1
}

func runSimCompare(env *cmdEnv, backend, format string, opts sim.Options, progress bool, oldName, newName, trace string) int {
	if oldName == "-" || newName == "-" {
		fmt.Fprintf(env.stderr, "kwl sim: with --compare, the policies must be files\n")
		return exitUsage
	}
	oldPol, oldEng, code := loadSimPolicy(env, oldName, backend, opts)
	if code >= 0 {
		return code
	}
	newPol, newEng, code := loadSimPolicy(env, newName, backend, opts)
	if code >= 0 {
		return code
	}
	tf, code := openTrace(env, trace)
	if code >= 0 {
		return code
	}
	defer tf.Close()
	r := tf.Reader
	out := bufio.NewWriterSize(env.stdout, 256<<10)
	defer out.Flush()
	rpOld, rpNew := replay.New(oldPol, oldEng), replay.New(newPol, newEng)
	var prog *progressBar
	if progress {
		prog = newProgress(env.stderr, tf)
	}
	// The text report puts the summary first: the packets that differ
	// wait in a temporary file (there may be millions) until it is out.
	pkts := io.Writer(out)
	var spillFile *os.File
	var spillBuf *bufio.Writer
	if format == "text" {
		spill, err := os.CreateTemp("", "kwl-compare-*")
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
			return exitUsage
		}
		defer os.Remove(spill.Name())
		defer spill.Close()
		spillFile, spillBuf = spill, bufio.NewWriterSize(spill, 256<<10)
		pkts = spillBuf
	}
	var line []byte
	// OLD's engine runs on a goroutine of its own; NEW's runs here,
	// packet by packet, while the replay merges.
	cmp, err := replay.Compare(r, rpOld, rpNew, func(p *capture.Packet, o1, o2 *replay.Outcome) {
		if prog != nil && p.N&0xffff == 0 {
			prog.update(p.N)
		}
		if !replay.Differs(o1, o2) {
			return
		}
		if format == "json" {
			line = report.AppendCompareJSON(line[:0], p, o1, o2, rpOld, rpNew)
		} else {
			line = report.AppendCompareText(line[:0], p, o1, o2, rpOld, rpNew)
		}
		pkts.Write(line)
	})
	if prog != nil {
		prog.done()
	}
	readErr := ""
	if err != io.EOF {
		readErr = err.Error()
	}
	c := &report.Comparison{Run: report.Run{Replay: rpOld, Reader: r, Trace: trace, Backend: backend, Err: readErr},
		New: rpNew, OldName: oldName, NewName: newName, Result: cmp}
	if format == "json" {
		out.Write(report.AppendCompareSummaryJSON(nil, c))
	} else {
		report.WriteCompareSummary(out, c)
		if cmp.Differ > 0 {
			fmt.Fprintf(out, "\npackets whose verdicts differ:\n")
			if err := copySpill(out, spillFile, spillBuf); err != nil {
				fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
				return exitUsage
			}
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return exitUsage
	}
	for _, w := range rpOld.Warnings(r) {
		fmt.Fprintf(env.stderr, "kwl sim: %s: warning: %s\n", trace, w)
	}
	if readErr != "" {
		fmt.Fprintf(env.stderr, "kwl sim: %s: %s\n", trace, readErr)
		return exitUsage
	}
	return exitOK
}

// copySpill writes the lines kept in spill (through buf) to w.
func copySpill(w io.Writer, spill *os.File, buf *bufio.Writer) error {
	if err := buf.Flush(); err != nil {
		return err
	}
	if _, err := spill.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, spill)
	return err
}
