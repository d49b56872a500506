//go:build linux

package kerneltest

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Catalog returns the hand-written scenarios of the kernel suite: each
// mechanism of SPEC.md's semantics with windows of 1 to 3 seconds, and
// every packet at least Margin from a timing boundary.
func Catalog() []Scenario {
	return []Scenario{{
		Name:   "single-knock",
		Want:   "ddadadada",
		Policy: "knock 1600 opens ssh for 2s\n",
		Packets: Steps(`
			0s     198.51.100.10 tcp/22       # closed
			300ms  198.51.100.10 tcp/1600     # knock, dropped
			600ms  198.51.100.10 tcp/22       # open for this source
			900ms  198.51.100.20 tcp/22       # not for another
			1.2s   198.51.100.10 tcp/22 data  # established
			1.5s   198.51.100.10 tcp/1600     # refresh: open until 3.5s
			2.9s   198.51.100.10:41007 tcp/22       # still open
			3.8s   198.51.100.10 tcp/22             # expired
			4.1s   198.51.100.10:41007 tcp/22 data  # the connection of 2.9s outlives its door
		`),
	}, {
		Name:   "close-ports-and-scans",
		Want:   "dadddaddadddddddd",
		Policy: "knock 1600 opens ssh for 3s\nclose ssh on 1599, 1601\n",
		Packets: Steps(`
			0s     198.51.100.10 1600
			200ms  198.51.100.10 22
			400ms  198.51.100.10 1599       # revokes
			600ms  198.51.100.10 22
			800ms  198.51.100.10 1600
			1s     198.51.100.10:41006 22
			1.2s   198.51.100.10 1601       # revokes
			1.4s   198.51.100.10 22
			1.6s   198.51.100.10:41006 22 data  # the connection of 1s survives
			1.8s   198.51.100.20 1599       # ascending scan: 1600 then 1601 closes
			1.95s  198.51.100.20 1600
			2.1s   198.51.100.20 1601
			2.3s   198.51.100.20 22
			2.5s   198.51.100.30 1601       # descending scan: 1599 last closes
			2.65s  198.51.100.30 1600
			2.8s   198.51.100.30 1599
			3s     198.51.100.30 22
		`),
	}, {
		Name:   "sequence-in-order-and-out",
		Want:   "dddadddddddd",
		Policy: "knock 7000, udp/8000, 9000 within 1s opens ssh for 3s\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			300ms  198.51.100.10 udp/8000
			600ms  198.51.100.10 9000
			900ms  198.51.100.10 22          # open
			0.95s  198.51.100.20 7000        # out of order: 7000 9000 8000
			1.25s  198.51.100.20 9000
			1.55s  198.51.100.20 udp/8000
			1.85s  198.51.100.20 22          # closed
			1.9s   198.51.100.30 7000        # too slow: 1.4s > 1s
			3.3s   198.51.100.30 udp/8000
			3.5s   198.51.100.30 9000
			3.7s   198.51.100.30 22          # closed
		`),
	}, {
		Name:   "sequence-whole-window",
		Want:   "dddaddddddddddadddddd",
		Policy: "knock 7000, udp/8000, 9000 in 2s opens ssh for 3s\nknock 9100, 9200 within 1s in 2s closes ssh\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			900ms  198.51.100.10 udp/8000
			1.8s   198.51.100.10 9000        # 1.8s after the first: opens
			2.1s   198.51.100.10 22          # open
			2.2s   198.51.100.20 7000        # each gap 1.2s, the whole 2.4s > 2s
			3.4s   198.51.100.20 udp/8000
			4.6s   198.51.100.20 9000
			4.9s   198.51.100.20 22          # closed
			5s     198.51.100.30 7000
			5.4s   198.51.100.30 7000        # a repeated first knock changes nothing
			5.8s   198.51.100.30 udp/8000
			6.2s   198.51.100.30 7000        # starts it over: the window runs from 6.2s
			7.3s   198.51.100.30 udp/8000
			7.9s   198.51.100.30 9000        # 1.7s after 6.2s (2.9s after 5s)
			8.2s   198.51.100.30 22          # open
			8.3s   198.51.100.30 9100        # closing: 9100 then 9200 within 1s, in 2s
			9.1s   198.51.100.30 9200
			9.4s   198.51.100.30 22          # closed
			9.5s   198.51.100.10 9100        # 10's door (open until 4.8s) is long gone
			9.6s   198.51.100.10 9200
			9.8s   198.51.100.10 22          # closed
		`),
	}, {
		Name:   "sequence-retransmitted-knocks",
		Want:   "ddddaddddadddda",
		Policy: "knock 7000, 8000, 9000 within 1s opens ssh for 3s\n",
		Packets: Steps(`
			0s     198.51.100.10:41000 7000
			200ms  198.51.100.10:41000 7000  # the same SYN again
			400ms  198.51.100.10:41001 8000
			600ms  198.51.100.10:41002 9000
			800ms  198.51.100.10 22
			1s     198.51.100.20:41010 7000
			1.2s   198.51.100.20:41011 8000
			1.4s   198.51.100.20:41011 8000  # a retransmitted middle knock: ignored
			1.6s   198.51.100.20:41012 9000
			1.8s   198.51.100.20 22
			2s     198.51.100.30:41020 7000
			2.2s   198.51.100.30:41021 8000
			2.4s   198.51.100.30:41022 9000
			2.6s   198.51.100.30:41022 9000  # a retransmitted last knock
			2.8s   198.51.100.30 22
		`),
	}, {
		Name:   "sequence-step-windows",
		Want:   "dddadddd",
		Policy: "knock 7000, 8000, 9000 within 2s opens ssh for 2s\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			1.7s   198.51.100.10 8000        # 1.7s: within 2s of the previous
			3.4s   198.51.100.10 9000        # 1.7s again: the window is per step
			3.7s   198.51.100.10 22
			3.8s   198.51.100.20 7000
			6.2s   198.51.100.20 8000        # 2.4s: too late
			6.5s   198.51.100.20 9000
			6.7s   198.51.100.20 22
		`),
	}, {
		Name: "limit-window-retries",
		// At most 3 admitted in any 3 s, the same on both backends;
		// refused attempts do not count.
		Want:   "aaadadaddaaadd",
		Policy: "limit ssh 3/3s per source\n",
		Packets: Steps(`
			0s     198.51.100.10 22
			150ms  198.51.100.10 22
			300ms  198.51.100.10:41003 22
			450ms  198.51.100.10 22          # over the limit
			600ms  198.51.100.20 22          # another source has its own
			750ms  198.51.100.10 22          # a retry while blocked
			900ms  198.51.100.10:41003 22 data  # an admitted connection is not counted
			1.3s   198.51.100.10 22
			2.7s   198.51.100.10 22
			3.5s   198.51.100.10 22
			4.5s   198.51.100.10 22
			4.65s  198.51.100.10 22
			4.8s   198.51.100.10 22
			5.3s   198.51.100.10 22
		`),
	}, {
		Name: "limit-global",
		// One limit for both families: nft only (iptables refuses it).
		Want:     "aaadaaaaad",
		Policy:   "limit https 3/1s\n",
		Backends: []string{"nft"},
		Packets: Steps(`
			0s     198.51.100.10 443
			150ms  198.51.100.20 443
			300ms  2001:db8:51::10 443
			450ms  198.51.100.30 443         # the shared bucket is empty
			1.5s   198.51.100.10 443
			1.65s  198.51.100.10 443
			3.5s   198.51.100.10 443
			3.65s  198.51.100.20 443
			3.8s   198.51.100.30 443
			3.95s  198.51.100.30 443
		`),
	}, {
		Name: "limit-global-one-family",
		// Shared by every IPv4 source; IPv6 is not limited.
		Want:   "aaaadaaad",
		Policy: "limit https 3/1s family ipv4\n",
		Packets: Steps(`
			0s     198.51.100.10 443
			150ms  198.51.100.20 443
			300ms  2001:db8:51::10 443       # not counted
			450ms  198.51.100.30 443
			600ms  198.51.100.40 443         # the 4th IPv4 source within 1s
			1.5s   198.51.100.10 443
			1.65s  198.51.100.20 443
			1.8s   198.51.100.30 443
			1.95s  198.51.100.40 443
		`),
	}, {
		Name: "limit-ban",
		// The refused connection bans, on both backends.
		Want:   "aaddaa",
		Policy: "limit ssh 2/1s per source ban 2s\n",
		Packets: Steps(`
			0s     198.51.100.10 22
			150ms  198.51.100.10 22
			300ms  198.51.100.10 22          # over: banned for 2s
			1.6s   198.51.100.10 22          # the limit would admit it; the ban does not
			1.8s   198.51.100.20 22
			2.9s   198.51.100.10 22          # ban over
		`),
	}, {
		Name:   "limit-masks",
		Want:   "aadaaada",
		Policy: "limit ssh 2/2s per source/24/64\n",
		Packets: Steps(`
			0s     198.51.100.10 22
			150ms  198.51.100.11 22          # same /24: same counter
			300ms  198.51.100.12 22
			450ms  203.0.113.7 22            # another /24
			600ms  2001:db8:51::10 22
			750ms  2001:db8:51::11 22        # same /64
			900ms  2001:db8:51::12 22
			1.05s  2001:db8:99::5 22
		`),
	}, {
		Name:   "knock-and-limit",
		Want:   "ddaad?da",
		Policy: "knock 1600 opens ssh for 3s\nlimit ssh 2/2s per source\n",
		Packets: Steps(`
			0s     198.51.100.10 22
			200ms  198.51.100.10 1600
			400ms  198.51.100.10 22
			550ms  198.51.100.10 22
			700ms  198.51.100.10 22          # door open, limit reached
			850ms  198.51.100.10 22 data
			1s     198.51.100.20 1600
			1.2s   198.51.100.20 22
		`),
	}, {
		Name:   "allow-bypasses",
		Want:   "aaaaaddad",
		Policy: "knock 1600 opens ssh for 2s\nallow ssh from 198.51.100.64/26, 2001:db8:51::40\nlimit ssh 1/2s per source\n",
		Packets: Steps(`
			0s     198.51.100.70 22
			150ms  198.51.100.70 22
			300ms  198.51.100.70 22
			450ms  2001:db8:51::40 22
			600ms  2001:db8:51::40 22
			750ms  198.51.100.10 22
			900ms  198.51.100.10 1600
			1.05s  198.51.100.10 22
			1.2s   198.51.100.10 22
		`),
	}, {
		Name:   "ipv6",
		Want:   "ddaddaddda",
		Policy: "knock 1600 opens ssh for 2s\nclose ssh on 1601\nlimit ssh 2/2s per source\n",
		Packets: Steps(`
			0s     2001:db8:51::10 22
			200ms  2001:db8:51::10 1600
			400ms  2001:db8:51::10 22
			600ms  2001:db8:51::11 22
			800ms  198.51.100.10 22          # a v4 address of the same client: no door
			1s     [2001:db8:51::10]:41006 22
			1.2s   2001:db8:51::10 22        # door open, limit reached
			1.4s   2001:db8:51::10 1601
			1.6s   2001:db8:51::10 22
			1.8s   [2001:db8:51::10]:41006 22 data  # the connection of 1s survives
		`),
	}, {
		Name:   "family-restricted",
		Want:   "addaaaad",
		Policy: "knock 1600 opens ssh for 2s family ipv4\nlimit https 1/2s per source family ipv6\n",
		Packets: Steps(`
			0s     2001:db8:51::10 1600
			200ms  2001:db8:51::10 22
			400ms  198.51.100.10 1600
			600ms  198.51.100.10 22
			800ms  198.51.100.10 443
			1s     198.51.100.10 443
			1.2s   2001:db8:51::10 443
			1.4s   2001:db8:51::10 443
		`),
	}, {
		Name:   "knock-from",
		Want:   "da?dda",
		Policy: "knock 1600 from 198.51.100.0/28, 2001:db8:51::/64 opens ssh for 2s\n",
		Packets: Steps(`
			0s     198.51.100.10 1600
			200ms  198.51.100.10 22
			400ms  198.51.100.20 1600        # not a knocking source
			600ms  198.51.100.20 22
			800ms  2001:db8:51::10 1600
			1s     2001:db8:51::10 22
		`),
	}, {
		Name:   "udp-service-and-established",
		Want:   "dddaaad",
		Policy: "service game = udp/27015\nknock udp/4444, 5555 within 1s opens game for 1s\n",
		Packets: Steps(`
			0s     198.51.100.10 udp/27015
			200ms  198.51.100.10 udp/4444
			400ms  198.51.100.10 5555
			600ms  198.51.100.10:42000 udp/27015
			800ms  198.51.100.10:42000 udp/27015 data
			2s     198.51.100.10:42000 udp/27015 data   # the flow outlives the door
			2.2s   198.51.100.10:42001 udp/27015        # a new flow does not
		`),
	}, {
		Name:   "closing-sequence",
		Want:   "ddaddd??",
		Policy: "knock 7000, 8000 within 1s opens ssh for 3s\nknock 9000, 7000 within 1s closes ssh\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			200ms  198.51.100.10 8000
			400ms  198.51.100.10 22
			600ms  198.51.100.10 9000
			800ms  198.51.100.10 7000         # closes (and starts the opening sequence)
			1s     198.51.100.10 22
			1.2s   198.51.100.10 8000         # completes the opening sequence
			1.4s   198.51.100.10 22
		`),
	}, {
		Name: "xt_recent-lru-over-100-sources",
		// xt_recent keeps 100 sources per list and evicts the least
		// recently seen: the first 20 doors are gone.
		WantOn: map[string]string{
			"iptables": strings.Repeat("d", 120) + "dddaaa",
			"nft":      strings.Repeat("d", 120) + "aaaaaa",
		},
		Policy:   "knock 1600 opens ssh for 3s\n",
		Packets:  lruPackets(120),
		Backends: []string{"iptables", "nft"},
	}, {
		Name: "nft-set-size-reached",
		// Sets of 4: the 5th and 6th doors are never opened.
		Want:     "dddddd" + "aaaadd",
		Policy:   "knock 1600 opens ssh for 3s\nlimit ssh 5/2s per source\n",
		SetSize:  4,
		Backends: []string{"nft"},
		Packets:  lruPackets(6),
	}, {
		// A knock and a close are SYNs: ACK, FIN, Xmas and null scans of
		// the knock and close ports change nothing. The ACK is new to
		// conntrack (loose pickup), the others are invalid.
		Name:   "scans-neither-knock-nor-close",
		Want:   "dddddd" + "ddddd" + "aadd",
		Policy: "knock 1600 opens ssh for 3s\nclose ssh on 1599, 1601\n",
		Packets: Steps(`
			0s     198.51.100.10 1600 flags A     # ACK scan
			200ms  198.51.100.10 1600 flags F     # FIN scan
			400ms  198.51.100.10 1600 flags FPU   # Xmas scan
			600ms  198.51.100.10 1600 flags none  # null scan
			800ms  198.51.100.10 22               # still closed
			900ms  198.51.100.10 22 flags A       # an ACK to a closed door is dropped too
			1s     198.51.100.10 1600             # the SYN knocks: open until 4s
			1.2s   198.51.100.10 1599 flags A
			1.4s   198.51.100.10 1601 flags F
			1.6s   198.51.100.10 1599 flags FPU
			1.8s   198.51.100.10 1601 flags none
			2s     198.51.100.10 22               # still open
			2.1s   198.51.100.10 22 flags A       # a flow picked up mid-stream, through the open door
			2.3s   198.51.100.10 1599             # the SYN closes
			2.5s   198.51.100.10 22
		`),
	}, {
		Name:   "scans-neither-advance-nor-reset-a-sequence",
		Want:   "dddddda" + "dddd" + "dddd",
		Policy: "knock 7000, udp/8000, 9000 within 1s opens ssh for 3s\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			200ms  198.51.100.10 9000 flags A     # as a SYN, it would reset the attempt
			400ms  198.51.100.10 udp/8000
			600ms  198.51.100.10 7000 flags FPU   # as a SYN, it would restart it
			800ms  198.51.100.10 9000 flags none
			1s     198.51.100.10 9000             # completes it
			1.2s   198.51.100.10 22
			1.4s   198.51.100.20 7000 flags A     # an ACK scan starts nothing
			1.6s   198.51.100.20 udp/8000
			1.8s   198.51.100.20 9000
			2s     198.51.100.20 22
			2.2s   198.51.100.30 7000
			2.4s   198.51.100.30 udp/8000
			2.6s   198.51.100.30 9000 flags F     # a FIN completes nothing
			2.8s   198.51.100.30 22
		`),
	}, {
		// A limit counts SYNs: bare ACKs, new to conntrack, go through
		// uncounted, even once the source is over the limit.
		Name:   "limit-counts-syns-only",
		Want:   "aaa" + "aad" + "a",
		Policy: "limit ssh 2/3s per source\n",
		Packets: Steps(`
			0s     198.51.100.10 22 flags A
			200ms  198.51.100.10 22 flags A
			400ms  198.51.100.10 22 flags AP
			600ms  198.51.100.10 22
			800ms  198.51.100.10 22
			1s     198.51.100.10 22               # the third SYN is over
			1.2s   198.51.100.10 22 flags A
		`),
	}, {
		// A knocked service that rejects: a reset to a SYN, and to a bare
		// ACK new to conntrack, from a source with no open door, on both
		// families; the knock itself is still dropped.
		Name:   "reject-while-closed",
		Want:   "rdardaarr",
		Policy: "knock 1600 opens ssh for 2s reject\n",
		Packets: Steps(`
			0s     198.51.100.10 22
			200ms  198.51.100.10 1600            # the knock: dropped, never answered
			400ms  198.51.100.10:41000 22        # open
			600ms  198.51.100.20 22              # not for another source
			800ms  2001:db8:51::10 1600
			1s     2001:db8:51::10 22
			1.2s   198.51.100.10:41000 22 data   # established
			1.4s   2001:db8:51::11 22 flags A    # an ACK scan gets a reset too
			2.8s   198.51.100.10 22              # the door has closed
		`),
	}, {
		// A limit with a ban that rejects, on a service of both protocols:
		// a reset for TCP, an ICMP or ICMPv6 port unreachable for UDP,
		// over the limit and while banned.
		Name:   "reject-limit-and-ban-both-protocols",
		Want:   "aarr" + "aarr" + "r",
		Policy: "service dual = tcp/5000, udp/5000\nlimit dual 2/3s per source ban 2s reject\n",
		Packets: Steps(`
			0s     198.51.100.10 tcp/5000
			200ms  198.51.100.10 udp/5000
			400ms  198.51.100.10 tcp/5000       # over: banned until 2.4s
			600ms  198.51.100.10 udp/5000       # banned
			800ms  2001:db8:51::10 udp/5000
			1s     2001:db8:51::10 tcp/5000
			1.2s   2001:db8:51::10 udp/5000     # over: banned until 3.2s
			1.4s   2001:db8:51::10 tcp/5000     # banned
			2.7s   198.51.100.10 udp/5000       # the ban is over, the limit still full
		`),
	}, {
		// A forwarded service that rejects: the firewall answers for the
		// inside host, from the forward hook, on both protocols.
		Name:   "reject-forwarded",
		Want:   "rdarar",
		Policy: "service inside = tcp/2222, udp/2222 forward to 192.168.1.5\nknock 1600 opens inside for 2s reject\n",
		Packets: Steps(`
			0s     198.51.100.10 tcp/2222
			200ms  198.51.100.10 1600
			400ms  198.51.100.10 tcp/2222
			600ms  198.51.100.20 udp/2222
			800ms  198.51.100.10 udp/2222
			1s     198.51.100.20 tcp/2222
		`),
	}, {
		// A single-use door: the SYN it admits deletes the source from
		// the door's set (nft) or list (iptables); a bare ACK new to
		// conntrack goes through without using it up; an unused door
		// still expires.
		Name:   "once",
		Want:   "dada" + "dd" + "daad" + "dd",
		Policy: "knock 1600 opens ssh once for 2s\n",
		Packets: Steps(`
			0s     198.51.100.10 1600
			200ms  198.51.100.10:41000 22
			400ms  198.51.100.10 22               # used up
			600ms  198.51.100.10:41000 22 data    # the session goes on
			800ms  2001:db8:51::10 1600
			1s     2001:db8:51::11 22             # another source
			1.2s   198.51.100.10 1600
			1.4s   198.51.100.10 22 flags A       # does not use it up
			1.6s   198.51.100.10 22
			1.8s   198.51.100.10 22
			3.3s   2001:db8:51::10 22             # its door expired unused
			3.5s   198.51.100.10 22
		`),
	}, {
		// A ban on all traffic: the /24 that went over the ssh limit is
		// dropped on every port and protocol, its knocks count for
		// nothing, its open session goes on; other sources and the
		// other family are untouched.
		Name:   "ban-all",
		Want:   "aada" + "dddd" + "aa" + "dada",
		Policy: "service web = tcp/8080\nknock 1600 opens web for 3s\nlimit ssh 2/2s per source/24 ban 2s all\n",
		Packets: Steps(`
			0s     198.51.100.10:41000 22
			200ms  198.51.100.10 22
			400ms  198.51.100.11 22               # over: 198.51.100.0/24 banned until 2.4s
			600ms  198.51.100.10:41000 22 data    # the session goes on
			800ms  198.51.100.12 25               # every port
			1s     198.51.100.10 udp/5353         # every protocol
			1.2s   198.51.100.10 1600             # a knock that counts for nothing
			1.4s   198.51.100.10 8080
			1.6s   203.0.113.5 25                 # another source
			1.8s   2001:db8:51::10 22             # the other family
			2.6s   198.51.100.10 8080             # the ban is over; no door
			2.8s   198.51.100.10 25
			3s     198.51.100.10 1600
			3.2s   198.51.100.10 8080
		`),
	}, {
		// A door keyed by prefix: the knocks of a sequence and the
		// connection may come from different addresses of one /24 (or
		// /64), as behind a carrier NAT; a close from any of them closes
		// the prefix's door.
		Name:   "door-per-prefix",
		Want:   "ddad" + "ddad" + "ddad",
		Policy: "knock 1600, 1700 opens ssh for 3s per source/24/64\nclose ssh on 1599\n",
		Packets: Steps(`
			0s     198.51.100.10 1600
			200ms  198.51.100.77 1700             # the same /24 goes on with the sequence
			400ms  198.51.100.200 22
			600ms  203.0.113.10 22                # another /24
			800ms  2001:db8:51::10 1600
			1s     2001:db8:51:0:ffff::1 1700     # the same /64
			1.2s   2001:db8:51::99 22
			1.4s   2001:db8:51:1::10 22           # another /64
			1.6s   198.51.100.3 1599              # closes the door of the /24
			1.8s   198.51.100.10 22
			2s     2001:db8:51::10 22             # the /64's door is still open
			4.5s   2001:db8:51::10 22             # and closed 3s after its last knock
		`),
	}, {
		// Caps of concurrent connections: per /24 on ssh, one shared by
		// all IPv4 sources on https. An open connection counts until it
		// closes (here by the client's reset); a refused one stops
		// counting at the next connection two jiffies on.
		Name:   "caps",
		Want:   "aaad" + "aaad" + "a" + "ara",
		Policy: "limit ssh 2 concurrent per source/24\nlimit https 1 concurrent family ipv4 reject\n",
		Packets: Steps(`
			0s     198.51.100.10:41000 22
			200ms  198.51.100.10:41000 22 data
			400ms  198.51.100.11 22               # the same /24: two open
			600ms  198.51.100.12 22               # a third: refused
			800ms  203.0.113.5 22                 # another /24
			1s     198.51.100.10:41000 22 data flags R # the first one closes
			1.2s   198.51.100.12 22
			1.4s   198.51.100.10 22
			1.6s   2001:db8:51::10 22             # IPv6 sources by /128
			1.8s   198.51.100.10 443
			2s     203.0.113.5 443                # the shared cap is full: reset
			2.2s   2001:db8:51::10 443            # IPv6 is not capped
		`),
	}, {
		// One sequence that opens two services, and one knock that
		// closes both.
		Name:   "knock-opens-two",
		Want:   "ddaad" + "ddd" + "ddad",
		Policy: "service web = tcp/8080\nknock 1600, 1700 opens ssh, web for 2s\nknock 1599 closes ssh, web\n",
		Packets: Steps(`
			0s     198.51.100.10 1600
			200ms  198.51.100.10 1700
			400ms  198.51.100.10 22
			600ms  198.51.100.10 8080
			800ms  198.51.100.20 8080             # another source
			1s     198.51.100.10 1599             # closes both
			1.2s   198.51.100.10 22
			1.4s   198.51.100.10 8080
			1.6s   2001:db8:51::10 1600
			1.8s   2001:db8:51::10 1700
			2s     2001:db8:51::10 8080
			4.2s   2001:db8:51::10 22             # both expired 2s after the knock
		`),
	}, {
		// Knocks that pass: the web server answers them, and the
		// sequence still opens ssh.
		Name:   "knock-passes",
		Want:   "aaad" + "ad",
		Policy: "service web = tcp/8080\nknock 8080, 1700 opens ssh for 2s pass\n",
		Packets: Steps(`
			0s     198.51.100.10 8080
			200ms  198.51.100.10 1700
			400ms  198.51.100.10 22
			600ms  198.51.100.20 22
			800ms  198.51.100.20 1700             # out of order: passes, opens nothing
			1s     198.51.100.20 22
		`),
	}, {
		// A knock out of order gets the source ignored for 1s: its
		// knocks of the sequence count for nothing, nor do they make the
		// ignoring last longer.
		Name:   "sequence-ignore",
		Want:   "ddddd" + "ddda" + "ddddddd",
		Policy: "knock 7000, 8000, 9000 opens ssh for 3s ignore 1s\n",
		Packets: Steps(`
			0s     198.51.100.10 8000             # out of order: ignored until 1s
			200ms  198.51.100.10 7000
			400ms  198.51.100.10 8000
			600ms  198.51.100.10 9000
			800ms  198.51.100.10 22
			1.3s   198.51.100.10 7000
			1.5s   198.51.100.10 8000
			1.7s   198.51.100.10 9000
			1.9s   198.51.100.10 22
			2.1s   198.51.100.20 7000
			2.3s   198.51.100.20 9000             # out of order: ignored until 3.3s
			2.5s   198.51.100.20 7000
			2.7s   198.51.100.20 8000
			2.9s   198.51.100.20 9000
			3.1s   198.51.100.20 22
			3.6s   198.51.100.20 22
		`),
	}, {
		// A strict sequence starts over on any other packet new to
		// conntrack from the source: a connection to another port, a
		// bare ACK, a datagram; not on its last knock again, nor on
		// another source's packets.
		Name:   "sequence-strict",
		Want:   "dddadd" + "ddda" + "daddd" + "daddd" + "ddada",
		Policy: "knock 7000, 8000, 9000 within 1s strict opens ssh for 3s\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			200ms  198.51.100.10 7000             # again: no reset
			400ms  198.51.100.10 8000
			600ms  198.51.100.10 80               # starts over
			800ms  198.51.100.10 9000
			1s     198.51.100.10 22
			1.2s   198.51.100.20 7000
			1.4s   198.51.100.20 8000
			1.6s   198.51.100.20 9000
			1.8s   198.51.100.20 22
			2s     198.51.100.30 7000
			2.2s   198.51.100.30 80 flags A       # new to conntrack: starts over
			2.4s   198.51.100.30 8000
			2.6s   198.51.100.30 9000
			2.8s   198.51.100.30 22
			3s     198.51.100.40 7000
			3.2s   198.51.100.40 udp/53           # starts over
			3.4s   198.51.100.40 8000
			3.6s   198.51.100.40 9000
			3.8s   198.51.100.40 22
			4s     2001:db8:51::10 7000
			4.2s   2001:db8:51::10 8000
			4.4s   2001:db8:51::11 80             # another source
			4.6s   2001:db8:51::10 9000
			4.8s   2001:db8:51::10 22
		`),
	}, {
		// An exclusive sequence starts over on a knock of another
		// statement (knockd's one attempt per source), a close port
		// included, and not on other traffic nor on a packet to a knock
		// port that is no knock (a bare ACK).
		Name:   "sequence-exclusive",
		Want:   "ddada" + "ddddda" + "ddddd" + "dddda",
		Policy: "knock 7000, 8000, 9000 within 1s exclusive opens ssh for 3s\nknock 1600 opens https for 3s\nclose ssh on 1599\n",
		Packets: Steps(`
			0s     198.51.100.10 7000
			200ms  198.51.100.10 8000
			400ms  198.51.100.10 80               # no knock: goes on
			600ms  198.51.100.10 9000
			800ms  198.51.100.10 22
			1s     198.51.100.20 7000
			1.2s   198.51.100.20 1600             # another door's knock: starts over
			1.4s   198.51.100.20 8000
			1.6s   198.51.100.20 9000
			1.8s   198.51.100.20 22
			2s     198.51.100.20 443
			2.2s   198.51.100.30 7000
			2.4s   198.51.100.30 1599             # a close port: starts over
			2.6s   198.51.100.30 8000
			2.8s   198.51.100.30 9000
			3s     198.51.100.30 22
			3.2s   198.51.100.40 7000
			3.4s   198.51.100.40 1600 flags A
			3.6s   198.51.100.40 8000
			3.8s   198.51.100.40 9000
			4s     198.51.100.40 22
		`),
	}, {
		// A sequence that comes back to a port: a knock on it advances
		// from each stage whose next knock it is, is a retransmission
		// at each stage it was the last counted knock of, and restarts
		// or resets elsewhere.
		Name:   "sequence-repeat",
		Want:   "dddda" + "ddd" + "dddddd" + "dddda",
		Policy: "knock udp/15637, 9000, udp/15637, 8000 within 1s opens ssh for 3s\n",
		Packets: Steps(`
			0s     198.51.100.10 udp/15637
			200ms  198.51.100.10 9000
			400ms  198.51.100.10 udp/15637        # advances, does not restart
			600ms  198.51.100.10 8000
			800ms  198.51.100.10 22
			1s     198.51.100.20 udp/15637
			1.2s   198.51.100.20 8000             # out of order: reset
			1.4s   198.51.100.20 22
			1.6s   198.51.100.30 udp/15637
			1.8s   198.51.100.30 9000
			2s     198.51.100.30 9000             # again: kept
			2.2s   198.51.100.30 udp/15637
			2.4s   198.51.100.30 udp/15637        # again: kept
			2.6s   198.51.100.30 9000             # out of order: reset
			2.8s   198.51.100.40 udp/15637
			3s     198.51.100.40 9000
			3.2s   198.51.100.40 udp/15637
			3.4s   198.51.100.40 8000
			3.6s   198.51.100.40 22
		`),
	}}
}

// lruPackets knocks from n sources 5 ms apart, then tries ssh from the
// first three and the last three, oldest first.
func lruPackets(n int) []Packet {
	srcs := make([]netip.Addr, n)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{198, 51, 100, byte(20 + i)})
	}
	var p []Packet
	for i, s := range srcs {
		p = append(p, Packet{At: time.Duration(i) * 5 * time.Millisecond, Src: s, Port: lang.Port{Proto: lang.TCP, Num: 1600}})
	}
	at := time.Duration(n)*5*time.Millisecond + 300*time.Millisecond
	for _, i := range []int{0, 1, 2, n - 3, n - 2, n - 1} {
		p = append(p, Packet{At: at, Src: srcs[i], Port: lang.Port{Proto: lang.TCP, Num: 22}})
		at += 20 * time.Millisecond
	}
	return p
}

// String renders a scenario as a kwl file with one test block, times as
// planned. The expectations are placeholders: see Repro.
func (s *Scenario) String() string { return s.render(s.Packets, nil, "") }

// Repro renders a kernel run of the scenario on one backend as a kwl file
// whose test block has the times the packets were sent and the kernel's
// verdicts as expectations: `kwl test --backend B` on it fails exactly
// where the simulator disagrees with the kernel.
func (s *Scenario) Repro(backend string, out []Outcome) string {
	pkts := sentPackets(out)
	v := make([]lang.Verdict, len(out))
	for i, o := range out {
		v[i] = kernelVerdict(o)
	}
	return s.render(pkts, v, backend)
}

func (s *Scenario) render(pkts []Packet, v []lang.Verdict, backend string) string {
	var b strings.Builder
	b.WriteString(s.Policy)
	name := s.Name
	if backend != "" {
		name += " (" + backend + " kernel)"
	}
	fmt.Fprintf(&b, "\ntest %q {\n", name)
	for i, p := range pkts {
		fmt.Fprintf(&b, "    at %s from %s", fmtDur(p.At), p.Src)
		if p.SPort != 0 {
			fmt.Fprintf(&b, " port %d", p.SPort)
		}
		fmt.Fprintf(&b, " %s", p.Port)
		if p.Kind == lang.Data {
			b.WriteString(" data")
		}
		if p.HasFlags {
			fmt.Fprintf(&b, " flags %s", p.Flags)
		}
		exp := lang.Accept
		if v != nil {
			exp = v[i]
		}
		fmt.Fprintf(&b, " expect %s\n", exp)
	}
	b.WriteString("}\n")
	return b.String()
}

// fmtDur prints a duration as kwl writes it. kwl's durations stop at the
// millisecond; the scenarios keep Margin from every boundary, so rounding
// does not change a verdict.
func fmtDur(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}
