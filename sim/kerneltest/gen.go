//go:build linux

package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Sources the random scenarios send from: two IPv4 hosts in one /24 and
// one in another, two IPv6 hosts in one /64 and one in another, so that
// per-source masks group some of them.
var genSources = []netip.Addr{
	netip.MustParseAddr("198.51.100.10"),
	netip.MustParseAddr("198.51.100.11"),
	netip.MustParseAddr("203.0.113.7"),
	netip.MustParseAddr("2001:db8:51::10"),
	netip.MustParseAddr("2001:db8:51::11"),
	netip.MustParseAddr("2001:db8:99::5"),
}

// genService is a service a random policy guards or limits.
type genService struct {
	name string // as written in the policy
	def  string // its service statement, "" for a built-in
	port lang.Port
}

var genServices = []genService{
	{"ssh", "", lang.Port{Proto: lang.TCP, Num: 22}},
	{"web", "service web = tcp/8080", lang.Port{Proto: lang.TCP, Num: 8080}},
	{"game", "service game = udp/27015", lang.Port{Proto: lang.UDP, Num: 27015}},
}

// Knock ports: disjoint from every service port.
var genKnockPorts = []lang.Port{
	{Proto: lang.TCP, Num: 1599}, {Proto: lang.TCP, Num: 1600}, {Proto: lang.TCP, Num: 1601},
	{Proto: lang.TCP, Num: 7000}, {Proto: lang.UDP, Num: 8000}, {Proto: lang.TCP, Num: 9000},
	{Proto: lang.UDP, Num: 4444}, {Proto: lang.TCP, Num: 5555},
}

func portText(p lang.Port) string {
	if p.Proto == lang.TCP {
		return fmt.Sprint(p.Num)
	}
	return p.String()
}

func portsText(ps []lang.Port) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = portText(p)
	}
	return strings.Join(s, ", ")
}

func secs(n int) string { return fmt.Sprintf("%ds", n) }

// genPlan is a random scenario before its times are drawn: the policy and
// the packets, each with the range its gap to the previous one is drawn
// from.
type genPlan struct {
	policy  []string
	pkts    []Packet
	gapMin  []time.Duration
	gapMax  []time.Duration
	summary []string
}

// Generate returns random scenario number seed. Its policy and packets
// depend on seed only; the gaps between packets depend on seed and
// attempt, so that a caller can redraw the times of a scenario whose
// packets fall near a timing boundary. The same (seed, attempt) always
// gives the same scenario.
func Generate(seed uint64, attempt int) Scenario {
	r := rand.New(rand.NewPCG(seed, 0x6b776c))
	plan := genPolicyAndPackets(r)
	// A reject on the door or the limit, and a single-use door on a TCP
	// service, drawn apart from the rest, so that adding them left every
	// other seed's scenario as it was.
	// A ban on all traffic is drawn apart too, and takes no reject (E32);
	// so are a door keyed by prefix and a cap in place of a rate.
	cp := rand.New(rand.NewPCG(seed, 0x636170))
	for i, st := range plan.policy {
		if f := strings.Fields(st); len(f) > 2 && f[0] == "limit" && cp.IntN(100) < 30 {
			n, _, _ := strings.Cut(f[2], "/")
			f[2] = n + " concurrent"
			plan.policy[i] = strings.Join(f, " ")
		}
	}
	ba := rand.New(rand.NewPCG(seed, 0x616c6c))
	for i, st := range plan.policy {
		if strings.HasPrefix(st, "limit ") && strings.Contains(st, " ban ") && ba.IntN(100) < 40 {
			plan.policy[i] += " all"
		}
	}
	pk := rand.New(rand.NewPCG(seed, 0x706572))
	for i, st := range plan.policy {
		if strings.Contains(st, " opens ") && pk.IntN(100) < 25 {
			// After the lifetime, before the options.
			per := []string{" per source/24", " per source/24/64"}[pk.IntN(2)]
			at := strings.Index(st, " for ") + len(" for ")
			at += strings.IndexByte(st[at:]+" ", ' ')
			plan.policy[i] = st[:at] + per + st[at:]
		}
	}
	rj := rand.New(rand.NewPCG(seed, 0x72656a))
	for i, st := range plan.policy {
		if (strings.Contains(st, " opens ") || strings.HasPrefix(st, "limit ")) && rj.IntN(100) < 30 && !strings.HasSuffix(plan.policy[i], " all") {
			plan.policy[i] += " reject"
		}
		if strings.Contains(st, " opens ") && !strings.Contains(st, " opens game ") && rj.IntN(100) < 25 {
			plan.policy[i] = strings.Replace(plan.policy[i], " for ", " once for ", 1)
		}
	}
	sx := rand.New(rand.NewPCG(seed, 0x737472))
	for i, st := range plan.policy {
		// A sequence (a knock with a window between knocks) that starts
		// over on any other new packet, or on another statement's knock.
		if strings.HasPrefix(st, "knock ") && strings.Contains(st, " within ") && sx.IntN(100) < 25 {
			word := []string{" strict", " exclusive"}[sx.IntN(2)]
			at := strings.Index(st, " opens ")
			if at < 0 {
				at = strings.Index(st, " closes ")
			}
			plan.policy[i] = st[:at] + word + st[at:]
		}
	}
	ig := rand.New(rand.NewPCG(seed, 0x69676e))
	for i, st := range plan.policy {
		// A sequence that opens ignores a source that knocks out of
		// order: after the lifetime and its key, before the options.
		if strings.HasPrefix(st, "knock ") && strings.Contains(st, " within ") && strings.Contains(st, " opens ") && ig.IntN(100) < 25 {
			at := strings.Index(st, " for ") + len(" for ")
			at += strings.IndexByte(st[at:]+" ", ' ')
			if strings.HasPrefix(st[at:], " per source") {
				at += len(" per source")
				at += strings.IndexByte(st[at:]+" ", ' ')
			}
			plan.policy[i] = st[:at] + " ignore " + secs(1+ig.IntN(2)) + st[at:]
		}
	}
	tr := rand.New(rand.NewPCG(seed, uint64(attempt)+1))
	var at time.Duration
	pkts := make([]Packet, len(plan.pkts))
	for i, p := range plan.pkts {
		lo, hi := plan.gapMin[i], plan.gapMax[i]
		// Whole milliseconds, so scenarios print readably.
		gap := lo + time.Duration(tr.Int64N(int64((hi-lo)/time.Millisecond)+1))*time.Millisecond
		if i == 0 {
			gap = 0
		}
		at += gap
		p.At = at
		pkts[i] = p
	}
	return Scenario{
		Name:    fmt.Sprintf("random-%03d", seed),
		Policy:  strings.Join(plan.policy, "\n") + "\n",
		Packets: pkts,
	}
}

func genPolicyAndPackets(r *rand.Rand) genPlan {
	var g genPlan
	pick := func(n int) int { return r.IntN(n) }
	chance := func(pct int) bool { return r.IntN(100) < pct }

	svc := genServices[pick(len(genServices))]
	if svc.def != "" {
		g.policy = append(g.policy, svc.def)
	}
	knocks := append([]lang.Port(nil), genKnockPorts...)
	r.Shuffle(len(knocks), func(i, j int) { knocks[i], knocks[j] = knocks[j], knocks[i] })

	// The door: a single knock or a sequence of 2 or 3 ports.
	var seq []lang.Port
	guarded := chance(85)
	within := 1 + pick(2)
	lifetime := 1 + pick(3)
	if guarded {
		seq = knocks[:1+pick(3)]
		knocks = knocks[len(seq):]
		stmt := "knock " + portsText(seq)
		family := ""
		if chance(10) {
			family = []string{"ipv4", "ipv6"}[pick(2)]
		}
		if chance(15) {
			// Sources of the statement's family only: the checker rejects
			// a source that can never match (E14).
			switch family {
			case "ipv4":
				stmt += " from 198.51.100.0/24"
			case "ipv6":
				stmt += " from 2001:db8:51::/64"
			default:
				stmt += " from 198.51.100.0/24, 2001:db8:51::/64"
			}
		}
		if len(seq) > 1 {
			stmt += " within " + secs(within)
		}
		if len(seq) == 3 && chance(30) {
			// A window of the whole sequence, from as long as one gap to
			// as long as both.
			stmt += " in " + secs(within+pick(within+1))
		}
		stmt += " opens " + svc.name + " for " + secs(lifetime)
		if family != "" {
			stmt += " family " + family
		}
		g.policy = append(g.policy, stmt)
	}
	// Revocation: close ports, or a closing sequence.
	var closePorts, closeSeq []lang.Port
	if guarded && chance(40) {
		if chance(60) {
			closePorts = knocks[:1+pick(2)]
			knocks = knocks[len(closePorts):]
			g.policy = append(g.policy, "close "+svc.name+" on "+portsText(closePorts))
		} else {
			closeSeq = knocks[:2]
			knocks = knocks[2:]
			g.policy = append(g.policy, "knock "+portsText(closeSeq)+" within "+secs(1+pick(2))+" closes "+svc.name)
		}
	}
	// A limit.
	if !guarded || chance(45) {
		count := 2 + pick(3)
		window := 1 + pick(3)
		stmt := fmt.Sprintf("limit %s %d/%ds", svc.name, count, window)
		switch pick(4) {
		case 0: // shared by all sources of one family: iptables keeps the families apart
			stmt += []string{" family ipv4", " family ipv6"}[pick(2)]
		case 1:
			stmt += " per source"
		case 2:
			stmt += " per source/24/64"
		case 3:
			stmt += " per source/24"
		}
		if strings.Contains(stmt, "per source") && chance(35) {
			stmt += " ban " + secs(1+pick(2))
		}
		g.policy = append(g.policy, stmt)
	}
	if chance(15) {
		g.policy = append(g.policy, "allow "+svc.name+" from "+genSources[pick(len(genSources))].String())
	}

	// Packets. Each source keeps the source port of its latest connection
	// to the service, for data packets and retransmits.
	// Three sources, so that each has a story: two IPv4 and one IPv6 or
	// the other way round, often sharing a masked prefix.
	v4 := []netip.Addr{genSources[0], genSources[1], genSources[2]}
	v6 := []netip.Addr{genSources[3], genSources[4], genSources[5]}
	r.Shuffle(3, func(i, j int) { v4[i], v4[j] = v4[j], v4[i] })
	r.Shuffle(3, func(i, j int) { v6[i], v6[j] = v6[j], v6[i] })
	srcs := []netip.Addr{v4[0], v4[1], v6[0]}
	if chance(50) {
		srcs = []netip.Addr{v6[0], v6[1], v4[0]}
	}
	nextPort := uint16(41000)
	latest := map[netip.Addr]uint16{}
	var lastNew *Packet
	add := func(p Packet, lo, hi time.Duration) {
		g.pkts = append(g.pkts, p)
		g.gapMin = append(g.gapMin, lo)
		g.gapMax = append(g.gapMax, hi)
		if p.Kind == lang.New {
			last := p
			lastNew = &last
		}
	}
	fresh := func() uint16 { nextPort++; return nextPort }
	short := func() (time.Duration, time.Duration) { return 120 * time.Millisecond, 400 * time.Millisecond }
	long := func() (time.Duration, time.Duration) { return 150 * time.Millisecond, 900 * time.Millisecond }
	n := 12 + pick(8)
	for len(g.pkts) < n {
		src := srcs[pick(len(srcs))]
		lo, hi := long()
		switch a := pick(100); {
		case a < 22 && guarded: // the whole sequence, in order
			for i, p := range seq {
				if i > 0 {
					lo, hi = short()
					if chance(15) {
						// Too slow for the window, or close to it.
						lo, hi = time.Duration(within)*time.Second-400*time.Millisecond, time.Duration(within)*time.Second+600*time.Millisecond
					}
				}
				add(Packet{Src: src, SPort: fresh(), Port: p}, lo, hi)
			}
			if chance(70) {
				// Then use the door.
				lo, hi = short()
				sp := fresh()
				latest[src] = sp
				add(Packet{Src: src, SPort: sp, Port: svc.port}, lo, hi)
			}
		case a < 32 && guarded: // one knock port, any
			add(Packet{Src: src, SPort: fresh(), Port: seq[pick(len(seq))]}, lo, hi)
		case a < 38 && (len(closePorts) > 0 || len(closeSeq) > 0):
			if len(closePorts) > 0 {
				add(Packet{Src: src, SPort: fresh(), Port: closePorts[pick(len(closePorts))]}, lo, hi)
			} else {
				for i, p := range closeSeq {
					if i > 0 {
						lo, hi = short()
					}
					add(Packet{Src: src, SPort: fresh(), Port: p}, lo, hi)
				}
			}
		case a < 62: // a connection to the service
			sp := fresh()
			latest[src] = sp
			add(Packet{Src: src, SPort: sp, Port: svc.port}, lo, hi)
		case a < 72: // a burst of connections
			for i := 0; i < 2+pick(3); i++ {
				if i > 0 {
					lo, hi = short()
				}
				sp := fresh()
				latest[src] = sp
				add(Packet{Src: src, SPort: sp, Port: svc.port}, lo, hi)
			}
		case a < 86: // data on the source's latest connection
			if sp, ok := latest[src]; ok {
				add(Packet{Src: src, SPort: sp, Port: svc.port, Kind: lang.Data}, lo, hi)
			}
		case a < 94: // a retransmit of the latest connection attempt
			if lastNew != nil {
				add(*lastNew, lo, hi)
			}
		default: // traffic the policy does not mention
			add(Packet{Src: src, SPort: fresh(), Port: lang.Port{Proto: lang.TCP, Num: 443}}, lo, hi)
		}
	}
	return g
}
