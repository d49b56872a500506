package sim

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// TestLimitWindowOracle checks the meaning of a limit on both backends'
// simulators against an oracle of the statement itself: a connection is
// admitted exactly when fewer than N connections were admitted in the
// closed window of length T that ends with it. Arrival times are random,
// in whole kernel ticks, with many of them at the boundary of a window
// (exactly T after an admission, and one tick either side).
func TestLimitWindowOracle(t *testing.T) {
	srcs := []netip.Addr{
		netip.MustParseAddr("198.51.100.10"),
		netip.MustParseAddr("198.51.100.11"),
		netip.MustParseAddr("203.0.113.5"),
	}
	for n := 1; n <= 8; n++ {
		for _, win := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, time.Minute} {
			for _, key := range []string{"per source", "per source/24", "family ipv4"} {
				text := fmt.Sprintf("limit ssh %d/%ds %s\n", n, win/time.Second, key)
				pol, diags := lang.Load("limit.kwl", []byte(text))
				if diags.HasErrors() {
					t.Fatalf("%s: %v", text, diags)
				}
				r := rand.New(rand.NewPCG(uint64(n), uint64(win)))
				for trial := 0; trial < 8; trial++ {
					test := limitOracleTest(r, n, win, srcs, key)
					for _, b := range Backends {
						res := RunTest(pol, test, b)
						if res.Err != nil {
							t.Fatal(res.Err)
						}
						for _, sr := range res.Failures() {
							t.Errorf("%s(%s, trial %d) %s", text, b, trial, sr.Message())
						}
					}
				}
			}
		}
	}
}

// limitOracleTest returns 40 connection attempts with the verdicts the
// oracle gives them for a limit of n per win keyed as key says.
func limitOracleTest(r *rand.Rand, n int, win time.Duration, srcs []netip.Addr, key string) *lang.Test {
	keyOf := func(a netip.Addr) string {
		switch key {
		case "per source":
			return a.String()
		case "per source/24":
			p, _ := a.Prefix(24)
			return p.String()
		}
		return ""
	}
	admitted := map[string][]time.Duration{}
	test := &lang.Test{Name: "oracle"}
	var now time.Duration
	for i := 0; i < 40; i++ {
		src := srcs[r.IntN(len(srcs))]
		k := keyOf(src)
		adm := admitted[k]
		switch c := r.IntN(4); {
		case c == 0 && len(adm) > 0:
			// At a boundary: T after an admission of this key, or a tick
			// either side of it.
			at := adm[r.IntN(len(adm))] + win + time.Duration(r.IntN(3)-1)*tick
			if at > now {
				now = at
			}
		default:
			now += time.Duration(r.Int64N(int64(2*win/time.Duration(n)/tick)+1)) * tick
		}
		in := 0
		for _, a := range adm {
			if now-a <= win {
				in++
			}
		}
		v := lang.Drop
		if in < n {
			v = lang.Accept
			admitted[k] = append(adm, now)
		}
		test.Steps = append(test.Steps, &lang.Step{At: now, Src: src, Port: lang.Port{Proto: lang.TCP, Num: 22}, Expect: v})
	}
	return test
}

// tick is one jiffy: the oracle's times are whole ticks, as the kernel
// sees them.
const tick = jiffy
