package audit

import (
	"math"
	"slices"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

func load(t *testing.T, src string) *lang.Policy {
	t.Helper()
	p, diags := lang.Load("a.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return p
}

// permutations calls f with every order of ps.
func permutations(ps []lang.Port, f func([]lang.Port)) {
	var rec func(k int)
	rec = func(k int) {
		if k == len(ps) {
			f(slices.Clone(ps))
			return
		}
		for i := k; i < len(ps); i++ {
			ps[k], ps[i] = ps[i], ps[k]
			rec(k + 1)
			ps[k], ps[i] = ps[i], ps[k]
		}
	}
	rec(0)
}

// TestRandomOrderAgainstEnumeration: the random-order estimate agrees
// with the exact share of orders that open the door, found by replaying
// every order of the policy's ports; for the seed's guard ports it is
// 1/3 (the knock after both close ports).
func TestRandomOrderAgainstEnumeration(t *testing.T) {
	for _, tc := range []struct {
		src   string
		exact float64
	}{
		{"knock 1600 opens ssh for 1h\nclose ssh on 1599, 1601\n", 1.0 / 3},
		{"knock 1600 opens ssh for 1h\n", 1},
		{"knock 7000, 8000 within 1h opens ssh for 1h\n", 0.5},
		{"knock 7000, 8000, 9000 within 1h opens ssh for 1h\nclose ssh on 8500\n", -1}, // found by enumeration
	} {
		p := load(t, tc.src)
		ports := policyPorts(p)
		opened, all := 0, 0
		permutations(ports, func(order []lang.Port) {
			at := make([]time.Duration, len(order))
			for i := range at {
				at[i] = time.Duration(i) * time.Millisecond
			}
			ok, _, err := scan(p, "nft", order, at, lang.Port{Proto: lang.TCP, Num: 22}, false, capture.SYN)
			if err != nil {
				t.Fatal(err)
			}
			all++
			opened += b2i(ok)
		})
		exact := float64(opened) / float64(all)
		if tc.exact >= 0 && math.Abs(exact-tc.exact) > 1e-9 {
			t.Errorf("%q: enumeration gives %v, want %v", tc.src, exact, tc.exact)
		}
		fs, err := Scans(p, Options{Backend: "nft", Trials: 2000, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		f := fs[len(fs)-1] // the random order
		if exact < f.Low || exact > f.High {
			t.Errorf("%q: random order %.3f [%.3f, %.3f] does not hold the exact %.3f", tc.src, f.Opened, f.Low, f.High, exact)
		}
	}
}

// TestScans: a single knock without close ports is opened by an
// ascending sweep; the seed's guard ports stop both sweeps; a 4-step
// sequence with 1 s windows is opened by no scan, the random order's
// bound below 1%.
func TestScans(t *testing.T) {
	get := func(src, attack string) Finding {
		t.Helper()
		fs, err := Scans(load(t, src), Options{Backend: "nft", Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if len(f.Attack) >= len(attack) && f.Attack[:len(attack)] == attack {
				return f
			}
		}
		t.Fatalf("no %s finding in %+v", attack, fs)
		return Finding{}
	}
	if f := get("knock 1600 opens ssh for 60s\n", "ascending"); !f.Fails() || f.Hint == "" {
		t.Errorf("a lone knock: %+v, want opened with a hint", f)
	}
	// ACK, FIN, Xmas and null scans knock nothing.
	for _, a := range []string{"ascending ACK", "ascending FIN", "ascending Xmas", "ascending null"} {
		if f := get("knock 1600 opens ssh for 60s\n", a); f.Fails() {
			t.Errorf("a lone knock, %s scan: %+v, want closed", a, f)
		}
	}
	const seed = "knock 1600 opens ssh for 60s\nclose ssh on 1599, 1601\n"
	for _, a := range []string{"ascending", "descending"} {
		if f := get(seed, a); f.Fails() {
			t.Errorf("the seed, %s: %+v, want closed", a, f)
		}
	}
	four := "knock 7000, 9100, 8200, 9900 within 1s opens ssh for 60s\n"
	for _, a := range []string{"ascending", "descending", "random"} {
		if f := get(four, a); f.Fails() || f.High > 0.01 {
			t.Errorf("4 steps, 1s windows, %s: %+v, want closed, bound below 1%%", a, f)
		}
	}
}

// TestSpoofing: a close port is a way to close a victim's door, a ban a
// way to ban a victim that sent nothing; a limit without a ban, or a
// door without closes, gives neither.
func TestSpoofing(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []Effect
	}{
		{"knock 1600 opens ssh for 60s\nclose ssh on 1599\n", []Effect{Closes}},
		{"knock 7000, 8000 opens ssh for 60s\nknock 8000, 7000 closes ssh\n", []Effect{Closes}},
		{"limit ssh 3/60s per source ban 10m\n", []Effect{Bans}},
		{"knock 1600 opens ssh for 60s\nlimit ssh 3/60s per source ban 10m\n", []Effect{Bans}},
		{"limit ssh 3/60s per source\n", nil},
		{"knock 1600 opens ssh for 60s\n", nil},
	} {
		for _, be := range []string{"nft", "iptables"} {
			fs, err := Spoofing(load(t, tc.src), Options{Backend: be})
			if err != nil {
				t.Fatal(err)
			}
			var got []Effect
			for _, f := range fs {
				got = append(got, f.Effect)
				if f.Fails() != (f.Effect == Bans) {
					t.Errorf("%q (%s): %s fails %v", tc.src, be, f.Effect, f.Fails())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q (%s): effects %v, want %v", tc.src, be, got, tc.want)
			}
		}
	}
}

// TestExhaustion: nft's door set refuses new doors at 65,535 sources,
// xt_recent's list evicts an open door after 100 others.
func TestExhaustion(t *testing.T) {
	p := load(t, "knock 1600 opens ssh for 60s\n")
	for _, be := range []string{"nft", "iptables"} {
		fs, err := Exhaustion(p, Options{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].Effect != Closes || fs[0].Fails() {
			t.Errorf("%s: %+v, want one denial of service", be, fs)
		}
	}
}
