package sim

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// This file formats the explanations: short events that say what state a
// packet read and wrote. They are built only when Options.Explain is set.

// fmtTime prints a simulated time in seconds, exactly, from its integer
// nanoseconds ("61s", "1.5s", "0.004s", "31536005.1s").
func fmtTime(d time.Duration) string {
	return string(append(lang.AppendSeconds(nil, d), 's'))
}

// fmtJiffies prints a time in jiffies as a simulated time.
func fmtJiffies(j int64) string { return fmtTime(time.Duration(j) * jiffy) }

func flowString(c *conn) string {
	t := c.orig
	s := fmt.Sprintf("%s %s -> %s", t.proto, netip.AddrPortFrom(t.src, t.sport), netip.AddrPortFrom(t.dst, t.dport))
	if c.dnat {
		s += fmt.Sprintf(" (dnat to %s)", netip.AddrPortFrom(c.natDst, c.natPort))
	}
	return s
}

func flagString(f capture.TCPFlags) string {
	var parts []string
	for _, x := range []struct {
		f capture.TCPFlags
		n string
	}{{capture.SYN, "SYN"}, {capture.ACK, "ACK"}, {capture.FIN, "FIN"}, {capture.RST, "RST"}, {capture.PSH, "PSH"},
		{capture.URG, "URG"}, {capture.ECE, "ECE"}, {capture.CWR, "CWR"}} {
		if f&x.f != 0 {
			parts = append(parts, x.n)
		}
	}
	if len(parts) == 0 {
		return "no flags"
	}
	return strings.Join(parts, "+")
}

func joinEvents(ev []string) string { return strings.Join(ev, "; ") }

func jiffyDur(j int64) time.Duration { return time.Duration(j) * jiffy }

func itoa(n int) string { return strconv.Itoa(n) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
