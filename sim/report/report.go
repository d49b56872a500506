// Package report writes what kwl sim found, in the forms kwl sim prints
// it: a line per packet (text for --explain, JSON Lines for --format
// json), the summary of a replay, and what differs between two replays
// of one capture (--compare). The JSON forms are those of the
// specification's sim JSON. The Append functions append to a buffer and
// allocate nothing per packet, so that a replay of millions of packets
// spends its time in the simulator.
package report

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// listMax caps the lists of sources in the text summary; --format json
// has them all.
const listMax = 20

// protoName names a protocol as the text and JSON lines do.
// NoStatement names, in text, what decided a packet that no statement
// of the policy decided: kwl's chains accept it, and the host's own
// rules decide.
const NoStatement = "(no statement: left to the host's rules)"

func protoName(p lang.Proto) string {
	switch p {
	case 58:
		return "icmpv6"
	case 0:
		return "hopopt"
	}
	return p.String()
}

// appendFlags writes TCP flags as tcpdump does: S, F, R, P, U, E, W and "."
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

// sortedAddrs returns the keys of m in order.
func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	as := make([]netip.Addr, 0, len(m))
	for a := range m {
		as = append(as, a)
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	return as
}

// writeSources writes, when there are addrs, a heading and a line per
// address (line writes it), at most listMax of them.
func writeSources(w io.Writer, heading string, addrs []netip.Addr, line func(a netip.Addr)) {
	if len(addrs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s\n", heading)
	for i, a := range addrs {
		if i == listMax {
			fmt.Fprintf(w, "  ... and %d more (--format json lists them all)\n", len(addrs)-listMax)
			break
		}
		line(a)
	}
}
