package audit

import (
	"math"
	"math/rand/v2"
	"testing"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
)

// bruteForce is a blind guesser over the ports 1 to n: it tries every
// sequence of k of them (no port twice in a row) in a random order, from
// one address, each followed by a connection to ssh, and returns the
// packets it sent until the connection was accepted, averaged over
// trials orders, with the standard error of the mean.
func bruteForce(t *testing.T, p *lang.Policy, k, n, trials int) (mean, se float64) {
	var guesses [][]uint16
	var rec func(g []uint16)
	rec = func(g []uint16) {
		if len(g) == k {
			guesses = append(guesses, append([]uint16(nil), g...))
			return
		}
		for x := uint16(1); x <= uint16(n); x++ {
			if len(g) > 0 && g[len(g)-1] == x {
				continue
			}
			rec(append(g, x))
		}
	}
	rec(nil)
	r := rand.New(rand.NewPCG(3, 4))
	var sum, sum2 float64
	for range trials {
		tl, err := newTimeline(p, Options{Backend: "nft"})
		if err != nil {
			t.Fatal(err)
		}
		sent := 0
		for _, i := range r.Perm(len(guesses)) {
			for _, x := range guesses[i] {
				tl.send(scanner4, lang.Port{Proto: lang.TCP, Num: x})
			}
			sent += k + 1
			if tl.send(scanner4, lang.Port{Proto: lang.TCP, Num: 22}) == lang.Accept {
				break
			}
		}
		sum += float64(sent)
		sum2 += float64(sent) * float64(sent)
	}
	mean = sum / float64(trials)
	return mean, math.Sqrt((sum2/float64(trials) - mean*mean) / float64(trials))
}

// TestGuessCostAgainstEnumeration: on a space of 6 ports, a guesser that
// tries every sequence in random order pays what guessCost says when
// each try starts afresh (a single knock, a strict sequence), and no more
// when tries may share knocks.
func TestGuessCostAgainstEnumeration(t *testing.T) {
	const n = 6
	for _, tc := range []struct {
		src   string
		k     int
		exact bool
	}{
		{"knock 4 opens ssh for 1h\n", 1, true},
		{"knock 2, 5 strict opens ssh for 1h\n", 2, true},
		{"knock 2, 5, 3 strict opens ssh for 1h\n", 3, true},
		{"knock 2, 5, 3 opens ssh for 1h\n", 3, false},
	} {
		mean, se := bruteForce(t, irtest.Load(t, tc.src), tc.k, n, 1000)
		want := guessCost(tc.k, n, 1)
		if tc.exact && math.Abs(mean-want) > 4*se || !tc.exact && mean > want+4*se {
			t.Errorf("%q: brute force pays %.1f packets (± %.1f), guessCost %.1f", tc.src, mean, se, want)
		}
	}
}

// TestGuessing: the ports that open a single knock's door are counted by
// trying each; a longer sequence costs the formula's.
func TestGuessing(t *testing.T) {
	for _, tc := range []struct {
		src  string
		cost float64
	}{
		{"knock 1600 opens ssh for 60s\nclose ssh on 1599, 1601\n", guessCost(1, 65535, 1)},
		{"knock 1600 opens ssh for 60s\nknock 1700 opens ssh for 60s\n", guessCost(1, 65535, 2)},
		{"knock udp/1600 opens ssh for 60s\n", guessCost(1, 65535, 1)},
		{"knock 7000, 9100, 8200, 9900 within 1s opens ssh for 60s\n", guessCost(4, 65535, 1)},
	} {
		for _, be := range []string{"nft", "iptables"} {
			fs, err := Guessing(irtest.Load(t, tc.src), Options{Backend: be})
			if err != nil {
				t.Fatal(err)
			}
			if fs[0].Cost != tc.cost || fs[0].Fails() {
				t.Errorf("%q (%s): cost %v, want %v, not failed", tc.src, be, fs[0].Cost, tc.cost)
			}
		}
	}
}
