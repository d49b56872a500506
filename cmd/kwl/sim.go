package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// noSplit makes kwl sim run one lane even when the engine can divide the
// packets (tests compare the two).
var noSplit bool

func init() {
	register(&command{
		name:  "sim",
		usage: "kwl sim [--backend nft|iptables] [--format text|json] [--host ADDR]... [--explain] FILE TRACE\n       kwl sim --compare [flags] OLD NEW TRACE",
		short: "replay a pcap or pcapng capture through a policy",
		run:   runSim,
	})
}

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
		return runSimCompare(env, *backend, *format, hosts, *progress, fs.Arg(0), fs.Arg(1), fs.Arg(2))
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
	tf, code := openTrace(env, trace)
	if code >= 0 {
		return code
	}
	defer tf.Close()
	r := tf.Reader
	explainText := *explain && *format == "text"
	eng, code := simEngine(env, name, src, pol, diags, *backend, hosts, explainText)
	if code >= 0 {
		return code
	}
	out := bufio.NewWriterSize(env.stdout, 256<<10)
	defer out.Flush()
	rp := replay.New(pol, eng)
	var prog *progressBar
	if *progress {
		prog = newProgress(env.stderr, tf)
	}
	var second replay.Engine
	if !noSplit && !explainText {
		// Explanations are not kept apart (sim.Split): --explain runs
		// one lane.
		second, _ = replay.NewEngine(*backend, pol, hosts, false)
	}
	var line []byte
	err = rp.Run(r, second, func(p *capture.Packet, o *replay.Outcome) {
		if *format == "json" {
			line = appendPacketJSON(line[:0], p, o, rp)
			out.Write(line)
		} else if *explain && o.Evaluated {
			line = appendExplain(line[:0], p, o, rp)
			out.Write(line)
		}
		if prog != nil && p.N&0xffff == 0 {
			prog.update(p.N)
		}
	})
	if prog != nil {
		prog.done()
	}
	readErr := ""
	if err != io.EOF {
		readErr = err.Error()
	}
	if *format == "json" {
		out.Write(appendSummaryJSON(nil, rp, r, readErr))
	} else {
		if *explain {
			out.WriteString("\n")
		}
		writeSummary(out, rp, trace, r, *backend, readErr)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return exitUsage
	}
	for _, w := range rp.Warnings(r) {
		fmt.Fprintf(env.stderr, "kwl sim: %s: warning: %s\n", trace, w)
	}
	if readErr != "" {
		fmt.Fprintf(env.stderr, "kwl sim: %s: %s\n", trace, readErr)
		return exitUsage
	}
	return exitOK
}

func protoName(p lang.Proto) string {
	switch p {
	case 58:
		return "icmpv6"
	case 0:
		return "hopopt"
	}
	return p.String()
}

// flagText writes TCP flags as tcpdump does: S, F, R, P, U, E, W and "."
// for ACK.
func appendFlags(b []byte, f capture.TCPFlags) []byte {
	for _, x := range []struct {
		bit capture.TCPFlags
		c   byte
	}{{capture.FIN, 'F'}, {capture.SYN, 'S'}, {capture.RST, 'R'}, {capture.PSH, 'P'}, {0x20, 'U'}, {0x40, 'E'}, {0x80, 'W'}, {capture.ACK, '.'}} {
		if f&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	return b
}

// appendSeconds writes d in seconds, exactly, from its integer
// nanoseconds (lang.AppendSeconds): 1373578999ns is 1.373578999.
func appendSeconds(b []byte, d time.Duration) []byte { return lang.AppendSeconds(b, d) }

// appendJSONString appends s as a JSON string.
func appendJSONString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendPacketJSON writes one packet's JSON line by hand: no reflection
// and no allocation per packet.
func appendPacketJSON(b []byte, p *capture.Packet, o *replay.Outcome, rp *replay.Replay) []byte {
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(p.N), 10)
	b = append(b, `,"time":`...)
	b = appendSeconds(b, p.Time)
	if p.Src.IsValid() {
		b = append(b, `,"src":"`...)
		b = p.Src.AppendTo(b)
		b = append(b, `","dst":"`...)
		b = p.Dst.AppendTo(b)
		b = append(b, `","proto":"`...)
		b = append(b, protoName(p.Proto)...)
		b = append(b, '"')
		if p.Proto == lang.TCP || p.Proto == lang.UDP {
			b = append(b, `,"sport":`...)
			b = strconv.AppendUint(b, uint64(p.SPort), 10)
			b = append(b, `,"dport":`...)
			b = strconv.AppendUint(b, uint64(p.DPort), 10)
		}
		if p.Proto == lang.TCP {
			b = append(b, `,"flags":"`...)
			b = appendFlags(b, p.Flags)
			b = append(b, '"')
		}
		if p.Frags > 0 {
			b = append(b, `,"fragments":`...)
			b = strconv.AppendUint(b, uint64(p.Frags), 10)
		}
	}
	if o.Skipped != "" {
		b = append(b, `,"skipped":`...)
		b = appendJSONString(b, o.Skipped)
		return append(b, "}\n"...)
	}
	b = append(b, `,"verdict":"`...)
	b = append(b, o.Verdict.String()...)
	b = append(b, `","rule":`...)
	b = appendJSONString(b, rp.RuleOf(o))
	if o.Blocked > 0 {
		b = append(b, `,"blocked_flow":`...)
		b = strconv.AppendInt(b, int64(o.Blocked), 10)
	}
	return append(b, "}\n"...)
}

// appendExplain writes one --explain line.
func appendExplain(b []byte, p *capture.Packet, o *replay.Outcome, rp *replay.Replay) []byte {
	b = appendPacketText(b, p)
	b = append(b, o.Verdict.String()...)
	if r := rp.RuleOf(o); len(r) > 0 {
		b = append(b, " by "...)
		b = append(b, r...)
		if pos := rp.Statement(o); rp.Kind(pos) != "" {
			k := rp.Kind(pos)
			b = append(b, " ("...)
			b = append(b, k...)
			b = append(b, ' ')
			b = append(b, rp.Service(pos)...)
			b = append(b, ')')
		}
	} else {
		b = append(b, " (no statement: chain policy)"...)
	}
	if o.Explain != "" {
		b = append(b, "; "...)
		b = append(b, o.Explain...)
	}
	return append(b, '\n')
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	as := make([]netip.Addr, 0, len(m))
	for a := range m {
		as = append(as, a)
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	return as
}

func appendSummaryJSON(b []byte, rp *replay.Replay, r *capture.Reader, readErr string) []byte {
	num := func(name string, v int) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, int64(v), 10)
	}
	b = append(b, `{"summary":true,"format":`...)
	b = appendJSONString(b, r.Format())
	num("packets", rp.Packets)
	num("evaluated", rp.Evaluated)
	num("skipped_packets", rp.Skipped)
	num("accepted", rp.Verdicts[lang.Accept])
	num("dropped", rp.Verdicts[lang.Drop])
	num("rejected", rp.Verdicts[lang.Reject])
	num("blocked_flow_packets", rp.BlockedPackets)
	num("sources", rp.Sources())
	num("knocks", rp.Knocks)
	num("knocking_sources", rp.Knockers())
	b = append(b, `,"rules":[`...)
	for i, rc := range rp.Rules() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rule":`...)
		b = appendJSONString(b, rc.Rule.String())
		if k := rp.Kind(rc.Rule); k != "" {
			b = append(b, `,"kind":"`...)
			b = append(b, k...)
			b = append(b, `","service":`...)
			b = appendJSONString(b, rp.Service(rc.Rule))
		}
		num("accept", rc.Counts[lang.Accept])
		num("drop", rc.Counts[lang.Drop])
		num("reject", rc.Counts[lang.Reject])
		b = append(b, '}')
	}
	b = append(b, `],"skip_reasons":{`...)
	reasons := make([]string, 0, len(rp.Skips))
	for s := range rp.Skips {
		reasons = append(reasons, s)
	}
	sort.Strings(reasons)
	for i, s := range reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(rp.Skips[s]), 10)
	}
	b = append(b, `},"opened":[`...)
	for i, a := range sortedAddrs(rp.Opened) {
		ad := rp.Opened[a]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"src":"`...)
		b = a.AppendTo(b)
		b = append(b, `","n":`...)
		b = strconv.AppendInt(b, int64(ad.N), 10)
		b = append(b, `,"time":`...)
		b = appendSeconds(b, ad.At)
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, rp.RuleText(ad.Rule))
		b = append(b, '}')
	}
	b = append(b, `],"limited":[`...)
	for i, a := range sortedAddrs(rp.Limited) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"src":"`...)
		b = a.AppendTo(b)
		b = append(b, `","drops":`...)
		b = strconv.AppendInt(b, int64(rp.Limited[a]), 10)
		b = append(b, '}')
	}
	b = append(b, ']')
	if fs := r.Fragments(); fs.Fragments > 0 {
		b = append(b, `,"fragments":{"fragments":`...)
		b = strconv.AppendInt(b, int64(fs.Fragments), 10)
		num("reassembled", fs.Reassembled)
		num("expired", fs.Expired)
		num("discarded", fs.Discarded)
		num("pending", fs.Pending)
		b = append(b, '}')
	}
	if rp.HeldBack() > 0 {
		num("held_back_packets", rp.HeldBack())
	}
	if ws := rp.Warnings(r); len(ws) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range ws {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	if readErr != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, readErr)
	}
	return append(b, "}\n"...)
}

// listMax caps the lists of sources in the text summary; --format json
// has them all.
const listMax = 20

func writeSummary(w *bufio.Writer, rp *replay.Replay, trace string, r *capture.Reader, backend, readErr string) {
	fmt.Fprintf(w, "%s (%s), backend %s\n", trace, r.Format(), backend)
	fmt.Fprintf(w, "packets %d: %d evaluated, %d skipped", rp.Packets, rp.Evaluated, rp.Skipped)
	if rp.BlockedPackets > 0 {
		fmt.Fprintf(w, ", %d in blocked flows", rp.BlockedPackets)
	}
	fmt.Fprintf(w, "\nverdicts: %d accepted, %d dropped, %d rejected\n", rp.Verdicts[lang.Accept], rp.Verdicts[lang.Drop], rp.Verdicts[lang.Reject])
	fmt.Fprintf(w, "sources: %d; %d knocks from %d sources\n", rp.Sources(), rp.Knocks, rp.Knockers())
	if fs := r.Fragments(); fs.Fragments > 0 {
		fmt.Fprintf(w, "fragments: %d, reassembled into %d datagrams; incomplete: %d timed out, %d still waiting at the end; %d datagrams discarded\n",
			fs.Fragments, fs.Reassembled, fs.Expired, fs.Pending, fs.Discarded)
	}
	if rp.HeldBack() > 0 {
		fmt.Fprintf(w, "clock: %d packets held back to the latest time seen (see the warning)\n", rp.HeldBack())
	}
	if rs := rp.Rules(); len(rs) > 0 {
		fmt.Fprintf(w, "\nby statement:\n")
		for _, rc := range rs {
			name := rc.Rule.String()
			if name == "" {
				name = "(no statement)"
			}
			what := rp.Kind(rc.Rule)
			if what != "" {
				what = " " + what + " " + rp.Service(rc.Rule)
			}
			fmt.Fprintf(w, "  %-24s%-20s accept %d, drop %d, reject %d\n", name, what, rc.Counts[lang.Accept], rc.Counts[lang.Drop], rc.Counts[lang.Reject])
		}
	}
	if len(rp.Opened) > 0 {
		fmt.Fprintf(w, "\nlet in by a knock (%d sources, first admission):\n", len(rp.Opened))
		for i, a := range sortedAddrs(rp.Opened) {
			if i == listMax {
				fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(rp.Opened)-listMax)
				break
			}
			ad := rp.Opened[a]
			fmt.Fprintf(w, "  %-40s at %ss (packet %d, %s)\n", a, appendSeconds(nil, ad.At), ad.N, ad.Rule)
		}
	}
	if len(rp.Limited) > 0 {
		fmt.Fprintf(w, "\nlimited (%d sources):\n", len(rp.Limited))
		for i, a := range sortedAddrs(rp.Limited) {
			if i == listMax {
				fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(rp.Limited)-listMax)
				break
			}
			fmt.Fprintf(w, "  %-40s %d dropped\n", a, rp.Limited[a])
		}
	}
	if len(rp.Skips) > 0 {
		fmt.Fprintf(w, "\nskipped:\n")
		reasons := make([]string, 0, len(rp.Skips))
		for s := range rp.Skips {
			reasons = append(reasons, s)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if rp.Skips[reasons[i]] != rp.Skips[reasons[j]] {
				return rp.Skips[reasons[i]] > rp.Skips[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		for _, s := range reasons {
			fmt.Fprintf(w, "  %6d  %s\n", rp.Skips[s], s)
		}
	}
	if readErr != "" {
		fmt.Fprintf(w, "\nreading stopped: %s\n", readErr)
	}
}

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

// appendPacketText writes the start of a text line about a packet:
// "N TIMEs PROTO SRC > DST [FLAGS]: ".
func appendPacketText(b []byte, p *capture.Packet) []byte {
	b = strconv.AppendInt(b, int64(p.N), 10)
	b = append(b, ' ')
	b = appendSeconds(b, p.Time)
	b = append(b, "s "...)
	b = append(b, protoName(p.Proto)...)
	b = append(b, ' ')
	b = netip.AddrPortFrom(p.Src, p.SPort).AppendTo(b)
	b = append(b, " > "...)
	b = netip.AddrPortFrom(p.Dst, p.DPort).AppendTo(b)
	if p.Proto == lang.TCP {
		b = append(b, " ["...)
		b = appendFlags(b, p.Flags)
		b = append(b, ']')
	}
	b = append(b, ": "...)
	return b
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
