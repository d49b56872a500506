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
	"sync/atomic"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// engine evaluates packets for kwl sim: the simulator of one backend
// running one policy.
type engine interface {
	// Eval decides p. p.Time never decreases from one call to the next.
	Eval(p *capture.Packet) simResult
	// Statements numbers the statements the results name:
	// simResult.Stmt indexes it, and index 0 is the zero Pos.
	Statements() []lang.Pos
}

// simResult is what kwl sim reports of one evaluated packet.
type simResult struct {
	Verdict lang.Verdict
	Rule    lang.Pos // the statement that decided; zero when none did
	Stmt    int      // Rule's index in the engine's Statements()
	Explain string   // state read and written, for --explain
	// Skip is set when the engine took the packet in (conntrack learned
	// from it) without evaluating it: "sent by the host".
	Skip string
}

// prefetcher is an engine that can read ahead the state a packet will
// need (sim.Sim.Prefetch).
type prefetcher interface {
	Prefetch(ps []capture.Packet)
}

// splitter is an engine whose packets divide into two parts that two
// engines of the same policy evaluate apart, with the results one engine
// evaluating all of them would give (sim.Split). split reports whether
// a packet belongs to the second part; it is safe for concurrent use.
type splitter interface {
	Split() (split func(*capture.Packet) bool, ok bool)
}

// replayBatch is how many packets are read, and their state prefetched,
// before they are evaluated in order.
const replayBatch = 32

// noSplit makes kwl sim run one lane even when the engine can divide the
// packets (tests compare the two).
var noSplit bool

// newEngine builds the simulator for a backend. It is nil in a build
// without the simulator; the file that wires package sim sets it in init.
var newEngine func(backend string, pol *lang.Policy, hosts []netip.Addr, explain bool) (engine, lang.Diagnostics, error)

func init() {
	register(&command{
		name:  "sim",
		usage: "kwl sim [--backend nft|iptables] [--format text|json] [--host ADDR]... [--explain] FILE TRACE\n       kwl sim --compare [flags] OLD NEW TRACE",
		short: "replay a pcap or pcapng capture through a policy",
		long: `Sim replays the packets of TRACE (pcap or pcapng, optionally gzip-compressed,
"-" for standard input) through the policy FILE, as the chosen backend's
kernel would evaluate them, and says what the policy would have done.

The text format (default) prints a summary: packets, verdicts, what each
statement decided, the sources a knock let in and when, the sources that
hit a limit, and why packets were skipped. --explain adds one line per
evaluated packet with the deciding statement and the state it read and
wrote.

--format json prints JSON Lines: one object per packet in capture order,
with n, time (seconds since the first packet), src, dst, proto, sport,
dport, flags, verdict and rule ("file:line:col", or "" when no statement
decided); a packet that was not evaluated has "skipped": "<reason>" and no
verdict. A last object with "summary": true holds the counts (its
"skipped_packets" is how many packets were not evaluated).

--host ADDR (repeatable) names the firewall's own addresses: packets they
send are not evaluated ("sent by the host"). Without it every packet is
taken as arriving at the firewall.

Packets of a flow whose first packet the policy dropped are reported as
part of that blocked flow (verdict drop, "blocked_flow": the first
packet's n), not evaluated as traffic of an established connection: the
firewall would have stopped the connection before they existed. A new
connection attempt (a TCP SYN, a UDP datagram) on the same addresses and
ports is evaluated again.

--compare OLD NEW TRACE replays the capture through two policies in one
pass and prints the packets whose verdict differs (old verdict and
statement -> new ones; with --format json, one object per packet with
"old" and "new"), then the sources whose access differs: how many of
their packets NEW accepts that OLD refused, and the reverse.

IP fragments are reassembled as the kernel does before any rule sees
them (nf_defrag_ipv4, nf_defrag_ipv6): a datagram is evaluated once, when
its last fragment arrives, at that time ("fragments": how many in its
JSON line); the other fragments are skipped ("held for reassembly").
A datagram whose fragments do not all arrive within 30 s (IPv4) or 60 s
(IPv6) of its first is never evaluated, as in the kernel; overlapping
fragments discard it. IPv6 extension headers are followed to the
transport header, however many there are. The summary counts the
fragments and what became of their datagrams.

Timestamps that go backwards (several interfaces, a clock step) are
replayed at the latest time seen so far. Packets held back by more than
a second are counted and warned about (standard error, and
"held_back_packets" and "warnings" in the JSON summary): one timestamp
far in the future holds back every packet after it.

The replay uses two cores: one reads the capture and writes the output
while the packets are simulated in two parts, those of flows on ports the
policy names and the rest, which the ruleset keeps apart (--explain
simulates them in one part). The results are the same either way.

Exit status: 0 the capture was replayed, 1 errors in the policy, 2 bad
usage or a capture that could not be read (what was read before the
error is still reported).

Examples:

	kwl sim examples/sshknock.kwl capture.pcap
	kwl sim --format json --host 192.0.2.1 policy.kwl trace.pcapng.gz | jq 'select(.verdict == "drop")'
	tcpdump -i eth0 -w - | kwl sim policy.kwl -`,
		run: runSim,
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
	if *backend != "nft" && *backend != "iptables" {
		fmt.Fprintf(env.stderr, "kwl sim: --backend must be nft or iptables, not %q\n", *backend)
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
	r, counted, size, closeTrace, code := openTrace(env, trace)
	if code >= 0 {
		return code
	}
	defer closeTrace()
	if newEngine == nil {
		fmt.Fprintf(env.stderr, "kwl sim: this build has no simulator\n")
		return exitUsage
	}
	eng, bdiags, err := newEngine(*backend, pol, hosts, *explain && *format == "text")
	// The backend's diagnostics repeat the policy's warnings; print the rest.
	seen := map[lang.Diagnostic]bool{}
	for _, d := range diags {
		seen[d] = true
	}
	var extra lang.Diagnostics
	for _, d := range bdiags {
		if !seen[d] {
			extra = append(extra, d)
		}
	}
	printDiags(env, extra, map[string][]byte{name: src})
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return exitFail
	}
	if bdiags.HasErrors() {
		return exitFail
	}

	out := bufio.NewWriterSize(env.stdout, 256<<10)
	defer out.Flush()
	rp := newReplay(pol, eng, hosts)
	var prog *progressBar
	if *progress {
		prog = newProgress(env.stderr, size, counted)
	}
	lanes := []*lane{rp.lane}
	var split func(*capture.Packet) bool
	if sp, ok := eng.(splitter); ok && !noSplit && !(*explain && *format == "text") {
		// Explanations are not kept apart (sim.Split): --explain runs
		// one lane.
		if f, ok := sp.Split(); ok {
			eng2, _, err := newEngine(*backend, pol, hosts, false)
			if err == nil && eng2 != nil {
				split = f
				lanes = append(lanes, newLane(eng2))
			}
		}
	}
	var line []byte
	err = pipeline(r, lanes, split, &rp.clock, func(pt *part, i int) {
		p, o := &pt.ps[i], &pt.out[i]
		if i%replayBatch == 0 {
			rp.sources.prefetch(pt.ps[i:min(i+replayBatch, pt.n)])
		}
		rp.account(p, o)
		if *format == "json" {
			line = appendPacketJSON(line[:0], p, o, rp)
			out.Write(line)
		} else if *explain && o.evaluated {
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
		out.Write(rp.appendSummaryJSON(nil, r, readErr))
	} else {
		if *explain {
			out.WriteString("\n")
		}
		rp.writeSummary(out, trace, r, *backend, readErr)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(env.stderr, "kwl sim: %v\n", err)
		return exitUsage
	}
	for _, w := range rp.warnings(r) {
		fmt.Fprintf(env.stderr, "kwl sim: %s: warning: %s\n", trace, w)
	}
	if readErr != "" {
		fmt.Fprintf(env.stderr, "kwl sim: %s: %s\n", trace, readErr)
		return exitUsage
	}
	return exitOK
}

// warnings are the reader's warnings and the clock's.
func (rp *replay) warnings(r *capture.Reader) []string {
	ws := r.Warnings()
	if w := rp.clock.warning(); w != "" {
		ws = append(ws[:len(ws):len(ws)], w)
	}
	return ws
}

// outcome is kwl sim's account of one packet.
// It is small, for it is handed from a lane to the merge for every
// packet.
type outcome struct {
	skipped   string // why the packet was not evaluated
	explain   string // state read and written, for --explain
	blocked   int    // n of the dropped first packet of this packet's flow, or 0
	stmt      int    // the deciding statement's index in the engine's statements
	verdict   lang.Verdict
	evaluated bool
}

// blockedFlow is a flow whose first packet was dropped.
type blockedFlow struct {
	first int   // n of that packet
	stmt  int32 // the statement that dropped it
	gen   int32 // the generation it was (last) blocked in; 0: none
}

// blockedPair holds the blocked flows between two endpoints, one per
// direction (dir[0] from the pair key's first endpoint), so that a packet
// finds both the flow it belongs to and the one it would answer with one
// probe.
type blockedPair struct {
	dir [2]blockedFlow
}

// flowGen is how long (in capture time) a blocked flow is remembered: one
// to two generations, past the minute in which peers retransmit an
// unanswered SYN or a reply.
const flowGen = 60 * time.Second

// Kinds of statements, per statement index.
const (
	kindNone uint8 = iota
	kindKnock
	kindClose
	kindLimit
	kindAllow
)

// replay runs packets through the lanes and keeps the counts. What it
// updates per packet is indexed by statement number or kept in
// open-addressing tables over pointer-free keys.
type replay struct {
	pol   *lang.Policy
	lane  *lane // the first lane: all packets but those of a second
	hosts map[netip.Addr]bool
	clock clock // for step

	// Statements by index: the engine's numbering.
	stmts    []lang.Pos
	counts   [][3]int
	stmtText [][]byte
	stmtKind []uint8

	packets, evaluated, skipped int
	verdicts                    [3]int
	blockedPackets              int
	ruleText                    map[lang.Pos][]byte
	skips                       map[string]int
	sources                     distinctAddrs
	kind                        map[lang.Pos]string // "knock", "close", "limit", "allow"
	service                     map[lang.Pos]string
	opened                      map[netip.Addr]admission // first admission through a door
	limited                     map[netip.Addr]int       // drops by a limit, per source
	knockPorts                  [2][1024]uint64          // tcp, udp: bit per port
	knocks                      int
	knockers                    distinctAddrs
}

type admission struct {
	n    int
	at   time.Duration
	rule lang.Pos
}

func newReplay(pol *lang.Policy, eng engine, hosts []netip.Addr) *replay {
	rp := &replay{
		pol:      pol,
		hosts:    map[netip.Addr]bool{},
		ruleText: map[lang.Pos][]byte{},
		skips:    map[string]int{},
		kind:     map[lang.Pos]string{},
		service:  map[lang.Pos]string{},
		opened:   map[netip.Addr]admission{},
		limited:  map[netip.Addr]int{},
	}
	for _, h := range hosts {
		rp.hosts[h] = true
	}
	for _, d := range pol.Doors {
		rp.kind[d.Pos], rp.service[d.Pos] = "knock", d.Service.Name
		for _, p := range d.Sequence {
			rp.setKnockPort(p)
		}
	}
	for _, v := range pol.Revokes {
		rp.kind[v.Pos], rp.service[v.Pos] = "close", v.Service.Name
		for _, p := range append(append([]lang.Port(nil), v.Ports...), v.Sequence...) {
			rp.setKnockPort(p)
		}
	}
	for _, l := range pol.Limits {
		rp.kind[l.Pos], rp.service[l.Pos] = "limit", l.Service.Name
	}
	for _, a := range pol.Allows {
		rp.kind[a.Pos], rp.service[a.Pos] = "allow", a.Service.Name
	}
	rp.lane = newLane(eng)
	for _, pos := range eng.Statements() {
		rp.addStmt(pos)
	}
	if len(rp.stmts) == 0 {
		rp.addStmt(lang.Pos{})
	}
	return rp
}

func (rp *replay) addStmt(pos lang.Pos) int {
	i := len(rp.stmts)
	rp.stmts = append(rp.stmts, pos)
	rp.counts = append(rp.counts, [3]int{})
	rp.stmtText = append(rp.stmtText, []byte(pos.String()))
	k := kindNone
	switch rp.kind[pos] {
	case "knock":
		k = kindKnock
	case "close":
		k = kindClose
	case "limit":
		k = kindLimit
	case "allow":
		k = kindAllow
	}
	rp.stmtKind = append(rp.stmtKind, k)
	return i
}

func knockProto(p lang.Proto) int {
	switch p {
	case lang.TCP:
		return 0
	case lang.UDP:
		return 1
	}
	return -1
}

func (rp *replay) setKnockPort(p lang.Port) {
	if i := knockProto(p.Proto); i >= 0 {
		rp.knockPorts[i][p.Num/64] |= 1 << (p.Num % 64)
	}
}

func (rp *replay) isKnockPort(proto lang.Proto, port uint16) bool {
	i := knockProto(proto)
	return i >= 0 && rp.knockPorts[i][port/64]&(1<<(port%64)) != 0
}

// isNew reports whether p would start a connection: a TCP SYN without
// ACK, or any UDP datagram or other packet, which conntrack takes as NEW
// when it has no entry.
func isNew(p *capture.Packet) bool {
	if p.Proto == lang.TCP {
		return p.Flags&(capture.SYN|capture.ACK) == capture.SYN
	}
	return true
}

// step runs one packet through the first lane and counts it: the replay
// one packet at a time, without the pipeline.
func (rp *replay) step(p *capture.Packet) outcome {
	rp.clock.keep(p)
	var pi pairInfo
	o := rp.lane.step(p, &pi)
	rp.account(p, &o)
	return o
}

// account counts a packet and its outcome.
func (rp *replay) account(p *capture.Packet, o *outcome) {
	rp.packets++
	if o.skipped != "" {
		rp.skipped++
		rp.skips[o.skipped]++
		return
	}
	if o.blocked > 0 {
		rp.blockedPackets++
		rp.verdicts[lang.Drop]++
		return
	}
	rp.evaluated++
	rp.verdicts[o.verdict]++
	rp.sources.add(p.Src)
	si := o.stmt
	rp.counts[si][o.verdict]++
	switch rp.stmtKind[si] {
	case kindKnock:
		if o.verdict == lang.Accept {
			if _, ok := rp.opened[p.Src]; !ok {
				rp.opened[p.Src] = admission{n: p.N, at: p.Time, rule: rp.stmts[si]}
			}
		}
	case kindLimit:
		if o.verdict != lang.Accept {
			rp.limited[p.Src]++
		}
	}
	if isNew(p) && rp.isKnockPort(p.Proto, p.DPort) {
		rp.knocks++
		rp.knockers.add(p.Src)
	}
}

// ruleOf returns the text of the statement that decided o.
func (rp *replay) ruleOf(o *outcome) []byte { return rp.stmtText[o.stmt] }

func (rp *replay) rule(pos lang.Pos) []byte {
	if t, ok := rp.ruleText[pos]; ok {
		return t
	}
	t := []byte(pos.String())
	rp.ruleText[pos] = t
	return t
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
func appendPacketJSON(b []byte, p *capture.Packet, o *outcome, rp *replay) []byte {
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
	if o.skipped != "" {
		b = append(b, `,"skipped":`...)
		b = appendJSONString(b, o.skipped)
		return append(b, "}\n"...)
	}
	b = append(b, `,"verdict":"`...)
	b = append(b, o.verdict.String()...)
	b = append(b, `","rule":`...)
	b = appendJSONString(b, rp.ruleOf(o))
	if o.blocked > 0 {
		b = append(b, `,"blocked_flow":`...)
		b = strconv.AppendInt(b, int64(o.blocked), 10)
	}
	return append(b, "}\n"...)
}

// appendExplain writes one --explain line.
func appendExplain(b []byte, p *capture.Packet, o *outcome, rp *replay) []byte {
	b = appendPacketText(b, p)
	b = append(b, o.verdict.String()...)
	if r := rp.ruleOf(o); len(r) > 0 {
		b = append(b, " by "...)
		b = append(b, r...)
		if pos := rp.stmts[o.stmt]; rp.kind[pos] != "" {
			k := rp.kind[pos]
			b = append(b, " ("...)
			b = append(b, k...)
			b = append(b, ' ')
			b = append(b, rp.service[pos]...)
			b = append(b, ')')
		}
	} else {
		b = append(b, " (no statement: chain policy)"...)
	}
	if o.explain != "" {
		b = append(b, "; "...)
		b = append(b, o.explain...)
	}
	return append(b, '\n')
}

type ruleCount struct {
	pos    lang.Pos
	counts [3]int
}

func (rp *replay) sortedRules() []ruleCount {
	var rs []ruleCount
	for i, c := range rp.counts {
		if c != [3]int{} {
			rs = append(rs, ruleCount{rp.stmts[i], c})
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i].pos, rs[j].pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return rs
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	as := make([]netip.Addr, 0, len(m))
	for a := range m {
		as = append(as, a)
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	return as
}

func (rp *replay) appendSummaryJSON(b []byte, r *capture.Reader, readErr string) []byte {
	num := func(name string, v int) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, int64(v), 10)
	}
	b = append(b, `{"summary":true,"format":`...)
	b = appendJSONString(b, r.Format())
	num("packets", rp.packets)
	num("evaluated", rp.evaluated)
	num("skipped_packets", rp.skipped)
	num("accepted", rp.verdicts[lang.Accept])
	num("dropped", rp.verdicts[lang.Drop])
	num("rejected", rp.verdicts[lang.Reject])
	num("blocked_flow_packets", rp.blockedPackets)
	num("sources", rp.sources.len())
	num("knocks", rp.knocks)
	num("knocking_sources", rp.knockers.len())
	b = append(b, `,"rules":[`...)
	for i, rc := range rp.sortedRules() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"rule":`...)
		b = appendJSONString(b, rc.pos.String())
		if k := rp.kind[rc.pos]; k != "" {
			b = append(b, `,"kind":"`...)
			b = append(b, k...)
			b = append(b, `","service":`...)
			b = appendJSONString(b, rp.service[rc.pos])
		}
		num("accept", rc.counts[lang.Accept])
		num("drop", rc.counts[lang.Drop])
		num("reject", rc.counts[lang.Reject])
		b = append(b, '}')
	}
	b = append(b, `],"skip_reasons":{`...)
	reasons := make([]string, 0, len(rp.skips))
	for s := range rp.skips {
		reasons = append(reasons, s)
	}
	sort.Strings(reasons)
	for i, s := range reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(rp.skips[s]), 10)
	}
	b = append(b, `},"opened":[`...)
	for i, a := range sortedAddrs(rp.opened) {
		ad := rp.opened[a]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"src":"`...)
		b = a.AppendTo(b)
		b = append(b, `","n":`...)
		b = strconv.AppendInt(b, int64(ad.n), 10)
		b = append(b, `,"time":`...)
		b = appendSeconds(b, ad.at)
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, rp.rule(ad.rule))
		b = append(b, '}')
	}
	b = append(b, `],"limited":[`...)
	for i, a := range sortedAddrs(rp.limited) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"src":"`...)
		b = a.AppendTo(b)
		b = append(b, `","drops":`...)
		b = strconv.AppendInt(b, int64(rp.limited[a]), 10)
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
	if rp.clock.held > 0 {
		num("held_back_packets", rp.clock.held)
	}
	if ws := rp.warnings(r); len(ws) > 0 {
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

func (rp *replay) writeSummary(w *bufio.Writer, trace string, r *capture.Reader, backend, readErr string) {
	fmt.Fprintf(w, "%s (%s), backend %s\n", trace, r.Format(), backend)
	fmt.Fprintf(w, "packets %d: %d evaluated, %d skipped", rp.packets, rp.evaluated, rp.skipped)
	if rp.blockedPackets > 0 {
		fmt.Fprintf(w, ", %d in blocked flows", rp.blockedPackets)
	}
	fmt.Fprintf(w, "\nverdicts: %d accepted, %d dropped, %d rejected\n", rp.verdicts[lang.Accept], rp.verdicts[lang.Drop], rp.verdicts[lang.Reject])
	fmt.Fprintf(w, "sources: %d; %d knocks from %d sources\n", rp.sources.len(), rp.knocks, rp.knockers.len())
	if fs := r.Fragments(); fs.Fragments > 0 {
		fmt.Fprintf(w, "fragments: %d, reassembled into %d datagrams; incomplete: %d timed out, %d still waiting at the end; %d datagrams discarded\n",
			fs.Fragments, fs.Reassembled, fs.Expired, fs.Pending, fs.Discarded)
	}
	if rp.clock.held > 0 {
		fmt.Fprintf(w, "clock: %d packets held back to the latest time seen (see the warning)\n", rp.clock.held)
	}
	if rs := rp.sortedRules(); len(rs) > 0 {
		fmt.Fprintf(w, "\nby statement:\n")
		for _, rc := range rs {
			name := rc.pos.String()
			if name == "" {
				name = "(no statement)"
			}
			what := rp.kind[rc.pos]
			if what != "" {
				what = " " + what + " " + rp.service[rc.pos]
			}
			fmt.Fprintf(w, "  %-24s%-20s accept %d, drop %d, reject %d\n", name, what, rc.counts[lang.Accept], rc.counts[lang.Drop], rc.counts[lang.Reject])
		}
	}
	if len(rp.opened) > 0 {
		fmt.Fprintf(w, "\nlet in by a knock (%d sources, first admission):\n", len(rp.opened))
		for i, a := range sortedAddrs(rp.opened) {
			if i == listMax {
				fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(rp.opened)-listMax)
				break
			}
			ad := rp.opened[a]
			fmt.Fprintf(w, "  %-40s at %ss (packet %d, %s)\n", a, appendSeconds(nil, ad.at), ad.n, ad.rule)
		}
	}
	if len(rp.limited) > 0 {
		fmt.Fprintf(w, "\nlimited (%d sources):\n", len(rp.limited))
		for i, a := range sortedAddrs(rp.limited) {
			if i == listMax {
				fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(rp.limited)-listMax)
				break
			}
			fmt.Fprintf(w, "  %-40s %d dropped\n", a, rp.limited[a])
		}
	}
	if len(rp.skips) > 0 {
		fmt.Fprintf(w, "\nskipped:\n")
		reasons := make([]string, 0, len(rp.skips))
		for s := range rp.skips {
			reasons = append(reasons, s)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if rp.skips[reasons[i]] != rp.skips[reasons[j]] {
				return rp.skips[reasons[i]] > rp.skips[reasons[j]]
			}
			return reasons[i] < reasons[j]
		})
		for _, s := range reasons {
			fmt.Fprintf(w, "  %6d  %s\n", rp.skips[s], s)
		}
	}
	if readErr != "" {
		fmt.Fprintf(w, "\nreading stopped: %s\n", readErr)
	}
}

// countingReader counts the bytes of the capture file read so far, for
// the progress indicator.
type countingReader struct {
	r io.Reader
	n atomic.Int64 // read by the progress indicator while the reader runs
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progressBar shows how far the replay is on a terminal's standard error.
type progressBar struct {
	w     io.Writer
	size  int64
	read  *countingReader
	start time.Time
	shown bool
}

// newProgress returns nil unless w is a terminal.
func newProgress(w io.Writer, size int64, read *countingReader) *progressBar {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progressBar{w: w, size: size, read: read, start: time.Now()}
}

func (pb *progressBar) update(n int) {
	el := time.Since(pb.start)
	if el < 500*time.Millisecond {
		return
	}
	pps := float64(n) / el.Seconds()
	var s strings.Builder
	fmt.Fprintf(&s, "\rkwl sim: %d packets", n)
	if pb.size > 0 {
		fmt.Fprintf(&s, " (%.0f%%)", 100*float64(pb.read.n.Load())/float64(pb.size))
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

// openTrace opens the capture named trace ("-" for standard input). It
// returns the reader, the byte counter under it (for progress), the file's
// size (0 when unknown), a function that closes the file, and -1, or an
// exit code after printing why the capture cannot be read.
func openTrace(env *cmdEnv, trace string) (r *capture.Reader, counted *countingReader, size int64, closeTrace func(), code int) {
	var in io.Reader = env.stdin
	closeTrace = func() {}
	if trace != "-" {
		f, err := os.Open(trace)
		if err != nil {
			return nil, nil, 0, nil, ioError(env, "sim", err)
		}
		if st, err := f.Stat(); err == nil {
			if st.IsDir() {
				f.Close()
				fmt.Fprintf(env.stderr, "kwl sim: %s: is a directory, not a capture\n", trace)
				return nil, nil, 0, nil, exitUsage
			}
			size = st.Size()
		}
		in = f
		closeTrace = func() { f.Close() }
	}
	counted = &countingReader{r: in}
	r, err := capture.Open(counted)
	if err != nil {
		closeTrace()
		fmt.Fprintf(env.stderr, "kwl sim: %s: %v\n", trace, err)
		return nil, nil, 0, nil, exitUsage
	}
	return r, counted, size, closeTrace, -1
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
