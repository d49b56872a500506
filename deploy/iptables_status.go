//go:build linux

package deploy

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// IptablesState is what kwl's iptables rules are now: per family, its
// chains with their rules and counters and the jumps into them, and the
// recent lists (doors, limits, bans) those rules use, with their entries.
type IptablesState struct {
	Loaded   bool              `json:"loaded"`
	Families []*IptablesFamily `json:"families"`
	Lists    []RecentList      `json:"lists"`
	// Statements adds up, over both families, the counters of the rules
	// that accept, drop or reject, by their comment.
	Statements []StatementState `json:"statements"`
}

// iptablesStatements adds up the counters of fams' rules by statement:
// by the rule's comment, admitted for a rule that ends -j ACCEPT,
// refused for one that ends -j DROP or REJECT.
func iptablesStatements(fams []*IptablesFamily) []StatementState {
	by := map[string]*StatementState{}
	for _, f := range fams {
		for _, t := range f.Tables {
			for _, c := range t.Chains {
				for _, r := range c.Rules {
					w, err := splitWords(r.Rule)
					if err != nil {
						continue
					}
					var name, target string
					for i := 0; i+1 < len(w); i++ {
						switch w[i] {
						case "--comment":
							name = w[i+1]
						case "-j":
							target = w[i+1]
						}
					}
					if name == "" || target != "ACCEPT" && target != "DROP" && target != "REJECT" {
						continue
					}
					s := by[name]
					if s == nil {
						s = &StatementState{Statement: name}
						by[name] = s
					}
					s.add(target == "ACCEPT", r.Packets, r.Bytes)
				}
			}
		}
	}
	out := []StatementState{}
	for _, s := range by {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Statement < out[j].Statement })
	return out
}

// RecentList is an xt_recent list and its entries, as
// /proc/net/xt_recent/NAME shows them.
type RecentList struct {
	Name    string        `json:"name"`
	Entries []RecentEntry `json:"entries"`
}

// RecentEntry is one source of a recent list and how many packets it
// has stamped there (the ring holds the latest ones).
type RecentEntry struct {
	Source string `json:"source"`
	Stamps int    `json:"stamps"`
	// Left is how long the entry still matters, in seconds: the longest
	// --seconds of the list's rules less the time since the source was
	// last seen (for a door: how long it stays open). 0 when unknown or
	// past.
	Left float64 `json:"left_s,omitempty"`

	lastSeen uint64 // jiffies
}

// IptablesStatus reads kwl's iptables rules of both families. Families
// whose tools are not installed are left out.
func IptablesStatus(ctx context.Context, o Options) (*IptablesState, error) {
	if err := check(); err != nil {
		return nil, err
	}
	fams, err := readIptables(&o)
	if err != nil {
		return nil, err
	}
	st := &IptablesState{Families: []*IptablesFamily{}, Lists: []RecentList{}}
	names := map[string]bool{}
	secs := map[string]int{}
	for _, f := range fams {
		if f.empty() {
			continue
		}
		st.Loaded = true
		var tabs []*IptablesTable
		for _, t := range f.Tables {
			if len(t.Chains) > 0 || len(t.Jumps) > 0 {
				tabs = append(tabs, t)
			}
		}
		st.Families = append(st.Families, &IptablesFamily{Cmd: f.Cmd, Tables: tabs})
		for n := range recentNames(f) {
			names[n] = true
		}
		for n, v := range recentSeconds(f) {
			secs[n] = max(secs[n], v)
		}
	}
	st.Statements = iptablesStatements(st.Families)
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		l := RecentList{Name: n, Entries: []RecentEntry{}}
		out, err := o.run("", "cat", "/proc/net/xt_recent/"+n)
		if err == nil {
			l.Entries = parseRecent(out)
		}
		st.Lists = append(st.Lists, l)
	}
	// The kernel's clock takes 100 ms to read: only when there are
	// entries to age.
	if slices.ContainsFunc(st.Lists, func(l RecentList) bool { return len(l.Entries) > 0 }) {
		if now, hz, err := kernelClock(); err == nil {
			for _, l := range st.Lists {
				for i := range l.Entries {
					if e := &l.Entries[i]; secs[l.Name] > 0 && e.lastSeen > 0 && now >= e.lastSeen {
						e.Left = max(0, float64(secs[l.Name])-float64(now-e.lastSeen)/float64(hz))
					}
				}
			}
		}
	}
	return st, nil
}

// kernelClock returns the kernel's jiffies now and its HZ, read from
// /proc/timer_list ("now at N nsecs", "jiffies: J") twice, 100 ms apart:
// HZ is the kernel's CONFIG_HZ nearest to the jiffies counted per second
// (100, 250, 300 or 1000), which no file states.
func kernelClock() (jiffies, hz uint64, err error) {
	read := func() (ns, j uint64, err error) {
		b, err := os.ReadFile("/proc/timer_list")
		if err != nil {
			return 0, 0, err
		}
		return parseTimerList(string(b))
	}
	ns0, j0, err := read()
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(100 * time.Millisecond)
	ns1, j1, err := read()
	if err != nil {
		return 0, 0, err
	}
	if ns1 <= ns0 {
		return 0, 0, fmt.Errorf("/proc/timer_list: the clock did not move")
	}
	return j1, nearestHZ(float64(j1-j0) / (float64(ns1-ns0) / 1e9)), nil
}

// parseTimerList returns the first "now at N nsecs" and "jiffies: J" of
// /proc/timer_list.
func parseTimerList(text string) (ns, jiffies uint64, err error) {
	var haveNS, haveJ bool
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "now at "); ok && !haveNS {
			f := strings.Fields(v)
			if len(f) > 0 {
				ns, err = strconv.ParseUint(f[0], 10, 64)
				haveNS = err == nil
			}
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "jiffies: "); ok && !haveJ {
			jiffies, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			haveJ = err == nil
		}
		if haveNS && haveJ {
			return ns, jiffies, nil
		}
	}
	return 0, 0, fmt.Errorf("/proc/timer_list: no time and jiffies")
}

// nearestHZ returns the CONFIG_HZ choice nearest to a measured rate.
func nearestHZ(rate float64) uint64 {
	best := uint64(250)
	for _, hz := range []uint64{100, 250, 300, 1000} {
		if math.Abs(rate-float64(hz)) < math.Abs(rate-float64(best)) {
			best = hz
		}
	}
	return best
}

// parseRecent reads /proc/net/xt_recent/NAME: one line per entry,
// "src=ADDR ttl: T last_seen: J oldest_pkt: I J1, J2, ...".
func parseRecent(text string) []RecentEntry {
	out := []RecentEntry{}
	for _, line := range strings.Split(text, "\n") {
		src, ok := strings.CutPrefix(strings.TrimSpace(line), "src=")
		if !ok || len(strings.Fields(src)) == 0 {
			continue
		}
		e := RecentEntry{Source: strings.Fields(src)[0]}
		if _, seen, ok := strings.Cut(line, "last_seen:"); ok {
			if f := strings.Fields(seen); len(f) > 0 {
				e.lastSeen, _ = strconv.ParseUint(f[0], 10, 64)
			}
		}
		if _, stamps, ok := strings.Cut(line, "oldest_pkt:"); ok {
			// "I J1, J2, ...": the index of the oldest stamp, then the stamps.
			if f := strings.Fields(stamps); len(f) > 1 {
				e.Stamps = len(f) - 1
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// Write prints the state for people.
func (st *IptablesState) Write(w io.Writer) {
	if !st.Loaded {
		fmt.Fprintf(w, "no kwl iptables chains are loaded\n")
		return
	}
	for _, f := range st.Families {
		for _, t := range f.Tables {
			fmt.Fprintf(w, "%s table %s\n", f.Cmd, t.Name)
			for _, j := range t.Jumps {
				fmt.Fprintf(w, "\tjump -A %s %s\n", j.Chain, j.Rule)
			}
			for _, c := range t.Chains {
				var pk, by uint64
				for _, r := range c.Rules {
					pk += r.Packets
					by += r.Bytes
				}
				fmt.Fprintf(w, "\tchain %s: %s, %d packets, %d bytes\n", c.Name, rules(len(c.Rules)), pk, by)
			}
		}
	}
	for _, l := range st.Lists {
		fmt.Fprintf(w, "\nrecent list %s: %d entr%s\n", l.Name, len(l.Entries), map[bool]string{true: "y", false: "ies"}[len(l.Entries) == 1])
		for _, e := range l.Entries {
			left := ""
			if e.Left > 0 {
				left = fmt.Sprintf(", %s left", (time.Duration(e.Left*1000) * time.Millisecond).String())
			}
			fmt.Fprintf(w, "\t%-40s %d stamp(s)%s\n", e.Source, e.Stamps, left)
		}
	}
}
