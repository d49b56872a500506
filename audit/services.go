package audit

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"kwl.dev/kwl/lang"
)

// ReadServices reads a port frequency table in the format of nmap's
// nmap-services file (one "NAME PORT/PROTO FREQUENCY [# COMMENT]" a line,
// fields separated by tabs or spaces, '#' comments) and returns the top
// TCP and UDP ports, most often found open first, as nmap's --top-ports
// chooses them; ports of equal frequency in ascending order. A line that
// does not parse is an error naming its line.
func ReadServices(r io.Reader, top int) ([]lang.Port, error) {
	type entry struct {
		port lang.Port
		freq float64
	}
	var es []entry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", n, why, sc.Text()) }
		if len(f) < 3 {
			return nil, bad("want NAME PORT/PROTO FREQUENCY")
		}
		num, proto, ok := strings.Cut(f[1], "/")
		pn, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil || pn == 0 {
			return nil, bad("bad port")
		}
		freq, err := strconv.ParseFloat(f[2], 64)
		if err != nil || !(freq >= 0 && freq <= 1) {
			return nil, bad("bad frequency")
		}
		var pr lang.Proto
		switch proto {
		case "tcp":
			pr = lang.TCP
		case "udp":
			pr = lang.UDP
		default:
			continue // sctp, ...
		}
		es = append(es, entry{lang.Port{Proto: pr, Num: uint16(pn)}, freq})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var out []lang.Port
	for _, pr := range []lang.Proto{lang.TCP, lang.UDP} {
		var of []entry
		seen := map[lang.Port]bool{}
		for _, e := range es {
			if e.port.Proto == pr && !seen[e.port] {
				seen[e.port] = true
				of = append(of, e)
			}
		}
		slices.SortStableFunc(of, func(a, b entry) int {
			if c := cmp.Compare(b.freq, a.freq); c != 0 {
				return c
			}
			return cmp.Compare(a.port.Num, b.port.Num)
		})
		for _, e := range of[:min(top, len(of))] {
			out = append(out, e.port)
		}
	}
	return out, nil
}
