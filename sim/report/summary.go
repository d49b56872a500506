package report

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// A Run is a replay of one capture, as a summary describes it.
type Run struct {
	Replay  *replay.Replay
	Reader  *capture.Reader // the capture, read to its end or to Err
	Trace   string          // the capture's name, as given
	Backend string
	Err     string // why reading stopped before the end; "" when it did not
}

// AppendSummaryJSON appends the last line of kwl sim --format json: the
// counts of the run, with "summary": true.
func AppendSummaryJSON(b []byte, run *Run) []byte {
	rp, r, readErr := run.Replay, run.Reader, run.Err
	num := func(name string, v int) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, int64(v), 10)
	}
	b = append(b, `{"summary":true,"format":`...)
	b = appendJSONString(b, r.Format())
	if start := r.Start(); !start.IsZero() {
		// The packets' "time" counts from it.
		b = append(b, `,"start":`...)
		b = appendJSONString(b, start.Format(time.RFC3339Nano))
	}
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

// WriteSummary writes the summary kwl sim prints by default.
func WriteSummary(w io.Writer, run *Run) {
	rp, r, readErr, trace, backend := run.Replay, run.Reader, run.Err, run.Trace, run.Backend
	fmt.Fprintf(w, "%s (%s), backend %s\n", trace, r.Format(), backend)
	start := r.Start()
	if !start.IsZero() {
		fmt.Fprintf(w, "first packet at %s; times below are seconds since then\n", start.Format(time.RFC3339Nano))
	}
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
		names := make([]string, len(rs))
		width := 44
		for i, rc := range rs {
			names[i] = rc.Rule.String()
			if names[i] == "" {
				names[i] = NoStatement
			} else if k := rp.Kind(rc.Rule); k != "" {
				names[i] += " " + k + " " + rp.Service(rc.Rule)
			}
			width = max(width, len(names[i]))
		}
		for i, rc := range rs {
			fmt.Fprintf(w, "  %-*s accept %d, drop %d, reject %d\n", width, names[i], rc.Counts[lang.Accept], rc.Counts[lang.Drop], rc.Counts[lang.Reject])
		}
	}
	opened := sortedAddrs(rp.Opened)
	sort.SliceStable(opened, func(i, j int) bool { return rp.Opened[opened[i]].N < rp.Opened[opened[j]].N })
	writeSources(w, fmt.Sprintf("let in by a knock (%d sources, by their first admission, earliest first):", len(rp.Opened)), opened, func(a netip.Addr) {
		ad := rp.Opened[a]
		fmt.Fprintf(w, "  %-40s at %ss", a, appendSeconds(nil, ad.At))
		if !start.IsZero() {
			fmt.Fprintf(w, " (%s)", start.Add(ad.At).Format(time.RFC3339Nano))
		}
		fmt.Fprintf(w, ", packet %d, %s\n", ad.N, ad.Rule)
	})
	limited := sortedAddrs(rp.Limited)
	sort.SliceStable(limited, func(i, j int) bool { return rp.Limited[limited[i]] > rp.Limited[limited[j]] })
	writeSources(w, fmt.Sprintf("limited (%d sources, most refused first):", len(rp.Limited)), limited, func(a netip.Addr) {
		fmt.Fprintf(w, "  %-40s %d refused\n", a, rp.Limited[a])
	})
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
