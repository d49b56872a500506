package audit

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// Guessing reports, for every door of p, what a blind guesser pays to
// open it: one that knows the policy's form (how many knocks, of which
// protocol each) but not its ports, and tries sequences at random, each
// once, each followed by a connection to the service. With n = 65,535
// ports a knock, a sequence of k knocks (no port twice in a row) has
// G = n(n-1)^(k-1) guesses; when m of them open the door, the guesser
// needs (G+1)/(m+1) tries on average, of k+1 packets each.
//
// For a single knock m is counted exhaustively: every port is tried in
// the simulator, each from an address of its own (guard ports and other
// doors of the service count). For a longer sequence m is 1. The cost
// assumes that a try leaves nothing for the next one, which a strict
// sequence makes so; otherwise a guesser may share knocks between tries
// and pay less, down to about a (k+1)th of it.
func Guessing(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	if o.Rate <= 0 {
		o.Rate = time.Millisecond
	}
	var out []Finding
	for _, d := range p.Doors {
		src, ok := source(d.Family, d.From, scanner4, scanner6)
		if !ok {
			continue
		}
		if d.Secret != nil {
			// One knock of 2^128 payloads, of which the live tokens
			// open the door: guessCost's (k+1)(G+1)/(m+1).
			cost := 2 * (math.Ldexp(1, 128) + 1) / float64(dayOfTokens+1)
			out = append(out, Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Backend: o.Backend, Effect: Guessed, Cost: cost, Trials: 1,
				Attack: fmt.Sprintf("a blind guess of the token needs %s packets on average (%s at %s probes/s), with a day's %s tokens loaded",
					count(cost), span(cost*o.Rate.Seconds()), count(1/o.Rate.Seconds()), commas(dayOfTokens))})
			continue
		}
		k := len(d.Sequence)
		m := 1
		if k == 1 {
			var err error
			if m, err = openers(p, o, d, src); err != nil {
				return nil, err
			}
			if m == 0 {
				continue
			}
		}
		cost := guessCost(k, 65535, m)
		what := fmt.Sprintf("a blind guess of the %s needs %s packets on average (%s at %s probes/s)",
			map[bool]string{true: "knock", false: fmt.Sprintf("%d knocks", k)}[k == 1],
			count(cost), span(cost*o.Rate.Seconds()), count(1/o.Rate.Seconds()))
		if m > 1 {
			what += fmt.Sprintf("; %d ports open it", m)
		}
		if k > 1 && d.Reset != lang.ResetAny {
			what += ", fewer when it shares knocks between tries (not strict)"
		}
		f := Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Backend: o.Backend, Effect: Guessed, Attack: what, Cost: cost, Trials: 1}
		if cost*o.Rate.Seconds() < 86400 {
			f.Hint = "a guesser opens it within a day: knock a sequence of 3 or more ports"
		}
		out = append(out, f)
	}
	return out, nil
}

// dayOfTokens is how many tokens a secret knock's set holds when kwl
// deploy loads a day of them (its default): a day of windows, and the
// windows of the skew and of now.
const dayOfTokens = int64(24*time.Hour/lang.TokenWindow) + lang.TokenSkew + 1

// guessCost is the packets a blind guesser sends on average to open a
// door of k knocks, n ports each, that m of the guesses open: (G+1)/(m+1)
// tries of k+1 packets, G = n(n-1)^(k-1).
func guessCost(k, n, m int) float64 {
	g := float64(n) * math.Pow(float64(n-1), float64(k-1))
	return float64(k+1) * (g + 1) / float64(m+1)
}

// openers counts the ports whose knock, from an address of its own,
// opens d's service: every port of the protocol of d's knock, tried in
// one simulator from consecutive addresses after src.
func openers(p *lang.Policy, o Options, d *lang.Door, src netip.Addr) (int, error) {
	o.Keep = false
	tl, err := newTimeline(p, o)
	if err != nil {
		return 0, err
	}
	proto, svc := d.Sequence[0].Proto, d.Service.Ports[0]
	mask := d.Mask4
	if src.Is6() {
		mask = d.Mask6
	}
	flood, ok := floodSources(d, src, 65535)
	if !ok || mask < src.BitLen() && len(d.From) > 0 {
		return 1, nil // too few addresses for a try each: take the policy's port
	}
	m := 0
	for n := 1; n <= 65535; n++ {
		a := flood(n - 1)
		if tl.at(tl.now, a, lang.Port{Proto: proto, Num: uint16(n)}, capture.SYN); tl.at(tl.now, a, svc, capture.SYN) == lang.Accept {
			m++
		}
	}
	return m, nil
}

// count writes a number of packets the way people read it.
func count(x float64) string {
	switch {
	case x < 1e6:
		return commas(int64(math.Round(x)))
	case x < 1e9:
		return fmt.Sprintf("%.3g million", x/1e6)
	default:
		return fmt.Sprintf("%.1e", x)
	}
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// span writes a number of seconds in the largest unit that keeps it
// readable.
func span(secs float64) string {
	const day, year = 86400, 365.25 * 86400
	switch {
	case secs < 120:
		return fmt.Sprintf("%.3g seconds", secs)
	case secs < 2*3600:
		return fmt.Sprintf("%.0f minutes", secs/60)
	case secs < 2*day:
		return fmt.Sprintf("%.0f hours", secs/3600)
	case secs < 2*year:
		return fmt.Sprintf("%.0f days", secs/day)
	case secs < 1e6*year:
		return commas(int64(secs/year)) + " years"
	default:
		return fmt.Sprintf("%.1e years", secs/year)
	}
}
