package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// This file is kwl sim --compare OLD NEW TRACE: the capture replayed
// through two policies in one pass, each with its own simulator and
// blocked flows, reporting the packets whose verdict differs and the
// sources whose access differs.

// loadSimPolicy loads a policy and its simulator for kwl sim; code >= 0
// means stop with that exit status.
func loadSimPolicy(env *cmdEnv, name, backend string, hosts []netip.Addr) (*lang.Policy, replay.Engine, int) {
	src, err := readSource(env, name)
	if err != nil {
		return nil, nil, ioError(env, "sim", err)
	}
	pol, diags := lang.Load(name, src)
	printDiags(env, diags, map[string][]byte{name: src})
	if diags.HasErrors() {
		return nil, nil, exitFail
	}
	eng, code := simEngine(env, name, src, pol, diags, backend, hosts, false)
	return pol, eng, code
}

// simEngine builds the simulator of a loaded policy and prints the
// backend's diagnostics but those of the load (diags), which they repeat,
// and those a kwl:ignore comment silences; code >= 0 means stop with that
// exit status.
func simEngine(env *cmdEnv, name string, src []byte, pol *lang.Policy, diags lang.Diagnostics, backend string, hosts []netip.Addr, explain bool) (replay.Engine, int) {
	eng, bdiags := replay.NewEngine(backend, pol, hosts, explain)
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

func runSimCompare(env *cmdEnv, backend, format string, hosts []netip.Addr, progress bool, oldName, newName, trace string) int {
	if oldName == "-" || newName == "-" {
		fmt.Fprintf(env.stderr, "kwl sim: with --compare, the policies must be files\n")
		return exitUsage
	}
	oldPol, oldEng, code := loadSimPolicy(env, oldName, backend, hosts)
	if code >= 0 {
		return code
	}
	newPol, newEng, code := loadSimPolicy(env, newName, backend, hosts)
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
			line = appendCompareJSON(line[:0], p, o1, o2, rpOld, rpNew)
		} else {
			line = appendCompareText(line[:0], p, o1, o2, rpOld, rpNew)
		}
		out.Write(line)
	})
	if prog != nil {
		prog.done()
	}
	readErr := ""
	if err != io.EOF {
		readErr = err.Error()
	}
	addrs, differ := sortedAddrs(cmp.Sources), cmp.Differ
	if format == "json" {
		b := []byte(`{"summary":true,"compare":true,"old":`)
		b = appendJSONString(b, oldName)
		b = append(b, `,"new":`...)
		b = appendJSONString(b, newName)
		b = append(b, `,"packets":`...)
		b = strconv.AppendInt(b, int64(rpOld.Packets), 10)
		b = append(b, `,"differ":`...)
		b = strconv.AppendInt(b, int64(differ), 10)
		b = append(b, `,"sources":[`...)
		for i, s := range addrs {
			a := cmp.Sources[s]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"src":"`...)
			b = s.AppendTo(b)
			b = append(b, `","gained":`...)
			b = strconv.AppendInt(b, int64(a.Gained), 10)
			b = append(b, `,"lost":`...)
			b = strconv.AppendInt(b, int64(a.Lost), 10)
			b = append(b, `,"other":`...)
			b = strconv.AppendInt(b, int64(a.Other), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
		if readErr != "" {
			b = append(b, `,"error":`...)
			b = appendJSONString(b, readErr)
		}
		out.Write(append(b, "}\n"...))
	} else {
		if differ > 0 {
			out.WriteString("\n")
		}
		fmt.Fprintf(out, "%s (%s), backend %s: %s -> %s\n", trace, r.Format(), backend, oldName, newName)
		fmt.Fprintf(out, "packets %d: verdict differs for %d\n", rpOld.Packets, differ)
		if len(addrs) > 0 {
			fmt.Fprintf(out, "\nsources whose access differs (%d):\n", len(addrs))
			for i, s := range addrs {
				if i == listMax {
					fmt.Fprintf(out, "  ... and %d more (--format json lists them all)\n", len(addrs)-listMax)
					break
				}
				a := cmp.Sources[s]
				fmt.Fprintf(out, "  %-40s %d now accepted, %d now refused", s, a.Gained, a.Lost)
				if a.Other > 0 {
					fmt.Fprintf(out, ", %d drop/reject", a.Other)
				}
				out.WriteString("\n")
			}
		}
		if readErr != "" {
			fmt.Fprintf(out, "\nreading stopped: %s\n", readErr)
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

func appendVerdictJSON(b []byte, o *replay.Outcome, rp *replay.Replay) []byte {
	b = append(b, `{"verdict":"`...)
	b = append(b, o.Verdict.String()...)
	b = append(b, `","rule":`...)
	b = appendJSONString(b, rp.RuleOf(o))
	if o.Blocked > 0 {
		b = append(b, `,"blocked_flow":`...)
		b = strconv.AppendInt(b, int64(o.Blocked), 10)
	}
	return append(b, '}')
}

// appendCompareJSON writes a packet whose verdict differs: the packet as
// kwl sim --format json has it, with "old" and "new" verdicts.
func appendCompareJSON(b []byte, p *capture.Packet, o1, o2 *replay.Outcome, rpOld, rpNew *replay.Replay) []byte {
	b = appendPacketJSON(b, p, o1, rpOld)
	// Replace the single verdict by the pair: cut at ,"verdict".
	if i := lastIndex(b, []byte(`,"verdict":`)); i >= 0 {
		b = b[:i]
	}
	b = append(b, `,"old":`...)
	b = appendVerdictJSON(b, o1, rpOld)
	b = append(b, `,"new":`...)
	b = appendVerdictJSON(b, o2, rpNew)
	return append(b, "}\n"...)
}

func lastIndex(b, sep []byte) int {
	for i := len(b) - len(sep); i >= 0; i-- {
		if string(b[i:i+len(sep)]) == string(sep) {
			return i
		}
	}
	return -1
}

func appendVerdictText(b []byte, o *replay.Outcome, rp *replay.Replay) []byte {
	b = append(b, o.Verdict.String()...)
	if r := rp.RuleOf(o); len(r) > 0 {
		b = append(b, " by "...)
		b = append(b, r...)
	} else {
		b = append(b, " (chain policy)"...)
	}
	if o.Blocked > 0 {
		b = append(b, " (blocked flow of packet "...)
		b = strconv.AppendInt(b, int64(o.Blocked), 10)
		b = append(b, ')')
	}
	return b
}

// appendCompareText writes a packet whose verdict differs as one line.
func appendCompareText(b []byte, p *capture.Packet, o1, o2 *replay.Outcome, rpOld, rpNew *replay.Replay) []byte {
	b = appendPacketText(b, p)
	b = appendVerdictText(b, o1, rpOld)
	b = append(b, " -> "...)
	b = appendVerdictText(b, o2, rpNew)
	return append(b, '\n')
}
