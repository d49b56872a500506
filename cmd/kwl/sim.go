package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
	"kwl.dev/kwl/sim/report"
)

// noSplit makes kwl sim run one lane even when the engine can divide the
// packets (tests compare the two).
var noSplit bool

// hostList is the repeatable --host flag.
type hostList []netip.Addr

func (h *hostList) String() string { return fmt.Sprint(*h) }

func (h *hostList) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("not an IP address: %q", s)
	}
	*h = append(*h, a.Unmap())
	return nil
}

func runSim(env *cmdEnv, args []string) int {
	c := commands["sim"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "nft", "simulate the `nft` or iptables kernel mechanisms")
	format := fs.String("format", "text", "output as `text` or json (JSON Lines)")
	explain := fs.Bool("explain", false, "text format: one line per evaluated packet with its explanation")
	progress := fs.Bool("progress", true, "show progress on standard error when it is a terminal")
	compare := fs.Bool("compare", false, "replay TRACE through two policies: kwl sim --compare OLD NEW TRACE")
	var hosts hostList
	fs.Var(&hosts, "host", "the firewall's own `ADDR` (repeatable)")
	secretFile := fs.String("secret", "", "read secret knocks' secret from `FILE` (default: the files the policy names)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if _, ok := compile.Lookup(*backend); !ok {
		fmt.Fprintf(env.stderr, "kwl sim: --backend must be %s, not %q\n", compile.NameList(" or "), *backend)
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(env.stderr, "kwl sim: --format must be text or json, not %q\n", *format)
		return exitUsage
	}
	if *compare {
		if fs.NArg() != 3 || *explain {
			fmt.Fprintf(env.stderr, "usage: kwl sim --compare [--backend nft|iptables] [--format text|json] [--host ADDR]... OLD NEW TRACE\nRun 'kwl help sim' for more.\n")
			return exitUsage
		}
		return runSimCompare(env, *backend, *format, simOptions(hosts, *secretFile), *progress, fs.Arg(0), fs.Arg(1), fs.Arg(2))
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help sim' for more.\n", c.usage)
		return exitUsage
	}
	name, trace := fs.Arg(0), fs.Arg(1)
	if name == "-" && trace == "-" {
		fmt.Fprintf(env.stderr, "kwl sim: the policy and the capture cannot both be standard input\n")
		return exitUsage
	}
	src, err := readSource(env, name)
	if err != nil {
		return ioError(env, "sim", err)
	}
	pol, diags := lang.Load(name, src)
	printDiags(env, diags, map[string][]byte{name: src})
	if diags.HasErrors() {
		return exitFail
	}
	// A capture that arrives as it is made (tcpdump -w - | kwl sim P -)
	// is replayed packet by packet, a line for each; output to a pipe or
	// a terminal is flushed line by line. An interrupt ends the replay
	// with its summary: standard input is read through a pipe of kwl's
	// own, which the interrupt closes, since a read of a blocking file
	// cannot be cut short.
	live := trace == "-" && isStream(env.stdin)
	flushEach := isStream(env.stdout)
	traceEnv := env
	stop := func() {}
	if live {
		pr, pw := io.Pipe()
		go func() { _, err := io.Copy(pw, env.stdin); pw.CloseWithError(err) }()
		traceEnv = &cmdEnv{stdin: pr, stdout: env.stdout, stderr: env.stderr}
		stop = func() { pw.CloseWithError(errInterrupted) }
	}
	tf, code := openTrace(traceEnv, trace)
	if code >= 0 {
		return code
	}
	defer tf.Close()
	if !live {
		stop = func() { tf.Close() }
	}
	interrupted, stopSignals := onInterrupt(stop)
	defer stopSignals()
	r := tf.Reader
	explainText := *explain && *format == "text"
	opts := simOptions(hosts, *secretFile)
	explained := opts
	explained.Explain = explainText
	eng, code := simEngine(env, name, src, pol, diags, *backend, explained)
	if code >= 0 {
		return code
	}
	out := bufio.NewWriterSize(env.stdout, 256<<10)
	defer out.Flush()
	rp := replay.New(pol, eng)
	rp.Live = live
	var prog *progressBar
	if *progress {
		prog = newProgress(env.stderr, tf)
	}
	var second replay.Engine
	if !noSplit && !explainText {
		// Explanations are not kept apart (sim.Split): --explain runs
		// one lane.
		second, _ = replay.NewEngine(*backend, pol, opts)
	}
	// --host naming one family's addresses only leaves the other
	// family's packets to be taken as routed through the firewall.
	unnamed, unnamedN := hostsMissing(hosts), 0
	var line []byte
	err = rp.Run(r, second, func(p *capture.Packet, o *replay.Outcome) {
		if unnamed != 0 && p.Src.Is4() == (unnamed == 4) {
			unnamedN++
		}
		line = line[:0]
		if *format == "json" {
			line = report.AppendPacketJSON(line, p, o, rp)
		} else if (*explain || live) && o.Evaluated {
			line = report.AppendExplain(line, p, o, rp)
		}
		out.Write(line)
		if flushEach && len(line) > 0 {
			out.Flush()
		}
		if prog != nil && p.N&0xffff == 0 {
			prog.update(p.N)
		}
	})
	if prog != nil {
		prog.done()
	}
	readErr := ""
	if interrupted() {
		fmt.Fprintf(env.stderr, "kwl sim: interrupted: the summary covers the packets read until then\n")
	} else if err != io.EOF {
		readErr = err.Error()
	}
	run := &report.Run{Replay: rp, Reader: r, Trace: trace, Backend: *backend, Err: readErr}
	if *format == "json" {
		out.Write(report.AppendSummaryJSON(nil, run))
	} else {
		if *explain || live {
			out.WriteString("\n")
		}
		report.WriteSummary(out, run)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return exitUsage
	}
	for _, w := range rp.Warnings(r) {
		fmt.Fprintf(env.stderr, "kwl sim: %s: warning: %s\n", trace, w)
	}
	if unnamedN > 0 {
		fmt.Fprintf(env.stderr, "kwl sim: %s: warning: --host names no IPv%d address of the firewall: %d IPv%d packets were taken as routed through it, not addressed to it\n",
			trace, unnamed, unnamedN, unnamed)
	}
	if readErr != "" {
		fmt.Fprintf(env.stderr, "kwl sim: %s: %s\n", trace, readErr)
		return exitUsage
	}
	return exitOK
}

// hostsMissing returns the family (4 or 6) of which hosts names no
// address while naming some of the other, or 0.
func hostsMissing(hosts []netip.Addr) int {
	var has4, has6 bool
	for _, h := range hosts {
		has4 = has4 || h.Is4()
		has6 = has6 || !h.Is4()
	}
	switch {
	case has4 && !has6:
		return 6
	case has6 && !has4:
		return 4
	}
	return 0
}

// isStream reports whether f is a pipe, a socket or a terminal: a
// stream read or written as it goes, not a file.
func isStream(f any) bool {
	osf, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := osf.Stat()
	return err == nil && st.Mode()&(os.ModeNamedPipe|os.ModeSocket|os.ModeCharDevice) != 0
}

// errInterrupted ends the reading of a live capture on an interrupt.
var errInterrupted = errors.New("interrupted")

// progressBar shows how far the replay is on a terminal's standard error.
type progressBar struct {
	w     io.Writer
	trace *capture.File
	start time.Time
	shown bool
}

// newProgress returns nil unless w is a terminal.
func newProgress(w io.Writer, trace *capture.File) *progressBar {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progressBar{w: w, trace: trace, start: time.Now()}
}

func (pb *progressBar) update(n int) {
	el := time.Since(pb.start)
	if el < 500*time.Millisecond {
		return
	}
	pps := float64(n) / el.Seconds()
	var s strings.Builder
	fmt.Fprintf(&s, "\rkwl sim: %d packets", n)
	if pb.trace.Size > 0 {
		fmt.Fprintf(&s, " (%.0f%%)", 100*float64(pb.trace.Offset())/float64(pb.trace.Size))
	}
	fmt.Fprintf(&s, ", %.2f M packets/s ", pps/1e6)
	io.WriteString(pb.w, s.String())
	pb.shown = true
}

func (pb *progressBar) done() {
	if pb.shown {
		io.WriteString(pb.w, "\r\033[K")
	}
}

// openTrace opens the capture of kwl sim, or says why it cannot (exit
// status 2, as a bad argument): code is -1 when tf is open.
func openTrace(env *cmdEnv, trace string) (tf *capture.File, code int) {
	tf, err := capture.OpenFile(trace, env.stdin)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return nil, exitUsage
	}
	return tf, -1
}
