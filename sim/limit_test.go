package sim

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile"
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
					for _, b := range compile.Names() {
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

// TestLogRate checks on both backends that a limit logs its refusals
// only, and no more lines than its log rate: 10 a minute by default, in
// bursts of up to 10, or what "rate N/DUR" says.
func TestLogRate(t *testing.T) {
	for _, tc := range []struct {
		log  string
		want int // lines for 3 admitted and 27 refused connections in 27 s
	}{
		{"log info", 10 + 4},            // a burst of 10, then one every 6 s
		{"log info rate 2/1s", 27},      // fast enough for one a second
		{"log info rate 1/1m", 1},       // one
		{"log info rate 5/1h", 5},       // a burst of 5
		{"log info prefix \"x: \"", 14}, // a prefix does not change the rate
	} {
		src := "limit ssh 3/1h per source " + tc.log + "\n"
		pol, diags := lang.Load("log.kwl", []byte(src))
		if diags.HasErrors() {
			t.Fatalf("%s: %v", src, diags)
		}
		test := &lang.Test{Name: "log"}
		for i := 0; i < 30; i++ {
			v := lang.Drop
			if i < 3 {
				v = lang.Accept
			}
			test.Steps = append(test.Steps, &lang.Step{At: time.Duration(i) * time.Second,
				Src: netip.MustParseAddr("198.51.100.10"), Port: lang.Port{Proto: lang.TCP, Num: 22}, Expect: v})
		}
		for _, b := range compile.Names() {
			s, diags := New(b, pol, Options{Explain: true})
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			res := s.Run(test)
			lines := 0
			for _, sr := range res.Steps {
				if !sr.OK {
					t.Errorf("%s%s: %s", src, b, sr.Message())
				}
				if strings.Contains(sr.Explain, "log ") || strings.Contains(sr.Explain, "LOG") {
					lines++
					if sr.Verdict == lang.Accept {
						t.Errorf("%s%s: an admitted connection is logged: %s", src, b, sr.Explain)
					}
				}
			}
			if lines != tc.want {
				t.Errorf("%s%s: %d lines logged, want %d", src, b, lines, tc.want)
			}
		}
	}
}
