package plan

import (
	"fmt"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// synRetransmit is when a client's first SYN retransmission leaves: TCP's
// initial RTO is 1s (include/net/tcp.h, TCP_TIMEOUT_INIT), doubling for
// each retry (1s, 3s, 7s, ... after the first SYN).
const synRetransmit = time.Second

// Warnings returns the warnings that hold on every backend: scan-completable
// knock sequences (L05), per-source IPv6 keys at /128 (L09), and windows
// too short for TCP's retransmissions (L10).
func Warnings(p *lang.Policy) lang.Diagnostics {
	var ds lang.Diagnostics
	guarded := map[*lang.Service]bool{}
	for _, r := range p.Revokes {
		if len(r.Ports) > 0 {
			guarded[r.Service] = true
		}
	}
	for _, d := range p.Doors {
		// A strict sequence starts over on every probe of a scan between
		// two knocks: a sequential scan completes it only when its ports
		// follow one another.
		// A secret knock's datagram carries a token no scan sends.
		scanned := d.Secret == nil && monotonic(d.Sequence) && (d.Reset != lang.ResetAny || adjacent(d.Sequence))
		if !guarded[d.Service] && scanned {
			if len(d.Sequence) == 1 {
				ds.Add(d.Pos, lang.Warning, lang.LintScanKnock,
					fmt.Sprintf("a port scan that reaches %s opens %s for the scanner, and %s has no close ports to stop it",
						portName(d.Sequence[0]), d.Service.Name, d.Service.Name),
					fmt.Sprintf("guard the knock port on both sides, as Shorewall's SSHKnock does: close %s on %s",
						d.Service.Name, neighbours(d.Sequence[0])))
			} else {
				ds.Add(d.Pos, lang.Warning, lang.LintScanKnock,
					fmt.Sprintf("knock ports %s are in %s order and %s has no close ports: a sequential port scan completes the sequence",
						portList(d.Sequence), order(d.Sequence), d.Service.Name),
					fmt.Sprintf("knock the ports out of order, or add guard ports: close %s on PORT, ...", d.Service.Name))
			}
		}
		if len(d.Sequence) > 1 && d.Within < synRetransmit {
			ds.Add(d.Pos, lang.Warning, lang.LintTiming,
				fmt.Sprintf("each knock must follow the previous one within %s, shorter than TCP's first SYN retransmission (1s): a lost or reordered knock cannot be made up", Dur(d.Within)),
				"give within at least 1s")
		}
		if d.Lifetime < 3*synRetransmit {
			ds.Add(d.Pos, lang.Warning, lang.LintTiming,
				fmt.Sprintf("the door stays open for %s only: a client whose first SYN is lost retransmits it after 1s and 3s (include/net/tcp.h, TCP_TIMEOUT_INIT)", Dur(d.Lifetime)),
				"open the door for at least 3s")
		}
	}
	for _, r := range p.Revokes {
		if len(r.Sequence) > 1 && r.Within < synRetransmit {
			ds.Add(r.Pos, lang.Warning, lang.LintTiming,
				fmt.Sprintf("each knock must follow the previous one within %s, shorter than TCP's first SYN retransmission (1s)", Dur(r.Within)),
				"give within at least 1s")
		}
	}
	for _, l := range p.Limits {
		v6 := Covers(Families(l.Family, nil, l.Service), V6)
		if v6 && (l.PerSource || l.Ban > 0) && Mask(l, V6) == 128 {
			what := "per-source IPv6 keys"
			if !l.PerSource {
				what = "IPv6 bans"
			}
			ds.Add(l.Pos, lang.Warning, lang.LintIPv6Key,
				fmt.Sprintf("%s are whole /128 addresses: a host usually holds a /64 and can change address at every attempt", what),
				"key IPv6 sources by /64: per source/32/64")
		}
	}
	return ds
}

// monotonic reports whether a sequential scan sends the ports of ps in
// their order: all of one protocol (a scanner scans TCP and UDP one after
// the other, as nmap's scan types run), ascending or descending.
func monotonic(ps []lang.Port) bool {
	if len(ps) <= 1 {
		return true
	}
	up, down := true, true
	for i := 1; i < len(ps); i++ {
		if ps[i].Proto != ps[0].Proto {
			return false
		}
		if ps[i].Num <= ps[i-1].Num {
			up = false
		}
		if ps[i].Num >= ps[i-1].Num {
			down = false
		}
	}
	return up || down
}

// adjacent reports whether each port of ps is the previous one's
// neighbour, of the same protocol, all in one direction: what a
// sequential scan sends back to back.
func adjacent(ps []lang.Port) bool {
	for i := 1; i < len(ps); i++ {
		d := int(ps[i].Num) - int(ps[i-1].Num)
		if ps[i].Proto != ps[0].Proto || d != 1 && d != -1 || d != int(ps[1].Num)-int(ps[0].Num) {
			return false
		}
	}
	return true
}

func order(ps []lang.Port) string {
	if ps[1].Num > ps[0].Num {
		return "ascending"
	}
	return "descending"
}

func portName(p lang.Port) string {
	if p.Proto == lang.TCP {
		return fmt.Sprint(p.Num)
	}
	return p.String()
}

func portList(ps []lang.Port) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = portName(p)
	}
	return strings.Join(s, ", ")
}

func neighbours(p lang.Port) string {
	var s []string
	if p.Num > 1 {
		s = append(s, portName(lang.Port{Proto: p.Proto, Num: p.Num - 1}))
	}
	if p.Num < 65535 {
		s = append(s, portName(lang.Port{Proto: p.Proto, Num: p.Num + 1}))
	}
	return strings.Join(s, ", ")
}
