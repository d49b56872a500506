package report

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"

	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// A Comparison is two replays of one capture (kwl sim --compare): Run
// is the replay through the old policy, New the one through the new.
type Comparison struct {
	Run
	New              *replay.Replay
	OldName, NewName string // the policies' files
	Result           *replay.Comparison
}

// AppendCompareJSON writes a packet whose verdict differs: the packet as
// kwl sim --format json has it, with "old" and "new" verdicts in place of
// its one.
func AppendCompareJSON(b []byte, p *capture.Packet, o1, o2 *replay.Outcome, rpOld, rpNew *replay.Replay) []byte {
	b = appendPacketFields(b, p)
	b = append(b, `,"old":{`...)
	b = appendVerdictFields(b, o1, rpOld)
	b = append(b, `},"new":{`...)
	b = appendVerdictFields(b, o2, rpNew)
	return append(b, "}}\n"...)
}

// appendVerdictText writes one side of a compared packet, as text.
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

// AppendCompareText writes a packet whose verdict differs as one line.
func AppendCompareText(b []byte, p *capture.Packet, o1, o2 *replay.Outcome, rpOld, rpNew *replay.Replay) []byte {
	b = appendPacketText(b, p)
	b = appendVerdictText(b, o1, rpOld)
	b = append(b, " -> "...)
	b = appendVerdictText(b, o2, rpNew)
	return append(b, '\n')
}

// AppendCompareSummaryJSON appends the last line of kwl sim --compare
// --format json: how many packets differ, and per source the access
// gained and lost.
func AppendCompareSummaryJSON(b []byte, c *Comparison) []byte {
	cmp := c.Result
	b = append(b, `{"summary":true,"compare":true,"old":`...)
	b = appendJSONString(b, c.OldName)
	b = append(b, `,"new":`...)
	b = appendJSONString(b, c.NewName)
	b = append(b, `,"packets":`...)
	b = strconv.AppendInt(b, int64(c.Replay.Packets), 10)
	b = append(b, `,"differ":`...)
	b = strconv.AppendInt(b, int64(cmp.Differ), 10)
	b = append(b, `,"sources":[`...)
	for i, s := range sortedAddrs(cmp.Sources) {
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
	if c.Err != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, c.Err)
	}
	return append(b, "}\n"...)
}

// WriteCompareSummary writes the summary kwl sim --compare prints by
// default, after the packets whose verdict differs.
func WriteCompareSummary(w io.Writer, c *Comparison) {
	cmp := c.Result
	fmt.Fprintf(w, "%s (%s), backend %s: %s -> %s\n", c.Trace, c.Reader.Format(), c.Backend, c.OldName, c.NewName)
	fmt.Fprintf(w, "packets %d: verdict differs for %d\n", c.Replay.Packets, cmp.Differ)
	addrs := sortedAddrs(cmp.Sources)
	n := func(a *replay.Access) int { return a.Gained + a.Lost + a.Other }
	sort.SliceStable(addrs, func(i, j int) bool { return n(cmp.Sources[addrs[i]]) > n(cmp.Sources[addrs[j]]) })
	writeSources(w, fmt.Sprintf("sources whose access differs (%d, most packets first):", len(addrs)), addrs, func(s netip.Addr) {
		a := cmp.Sources[s]
		fmt.Fprintf(w, "  %-40s %d now accepted, %d now refused", s, a.Gained, a.Lost)
		if a.Other > 0 {
			fmt.Fprintf(w, ", %d drop/reject", a.Other)
		}
		io.WriteString(w, "\n")
	})
	if c.Err != "" {
		fmt.Fprintf(w, "\nreading stopped: %s\n", c.Err)
	}
}
