package audit

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

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
		{"knock 7000, udp/8000, 9000 within 1h opens ssh for 1h\n", 1.0 / 6},           // TCP and UDP at once
	} {
		p := irtest.Load(t, tc.src)
		ports := policyPorts(p)
		opened, all := 0, 0
		permutations(ports, func(order []lang.Port) {
			at := make([]time.Duration, len(order))
			for i := range at {
				at[i] = time.Duration(i) * time.Millisecond
			}
			sc := scanner{p: p, o: Options{Backend: "nft", Rate: time.Millisecond}, src: scanner4, svc: lang.Port{Proto: lang.TCP, Num: 22}}
			ok, _, _, err := sc.run(order, at, capture.SYN)
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
// sequence with 1 s windows on ports far apart is opened by no scan, the
// random order's bound below 1%.
func TestScans(t *testing.T) {
	get := func(src, attack string) Finding {
		t.Helper()
		fs, err := Scans(irtest.Load(t, src), Options{Backend: "nft", Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if strings.HasPrefix(f.Attack+":", attack) {
				return f
			}
		}
		t.Fatalf("no %s finding in %+v", attack, fs)
		return Finding{}
	}
	for _, src := range []string{
		"knock 1600 opens ssh for 60s\n",
		"knock 1600 opens ssh for 60s family ipv6\n",
		"knock 1600 from 192.0.2.0/24 opens ssh for 60s\n",
		"service in = tcp/22 forward to 192.168.1.5\nknock 1600 opens in for 60s\n",
	} {
		if f := get(src, "ascending"); !f.Fails() || f.Hint == "" {
			t.Errorf("%q: %+v, want opened with a hint", src, f)
		}
	}
	if f := get("knock 1600 from 192.0.2.0/24 opens ssh for 60s\n", "ascending"); !strings.Contains(f.Attack, "from 192.0.2.66") {
		t.Errorf("a door with a from list: %q, want the scanner named", f.Attack)
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
	// A descending pair less than a second of probes apart: the sweep in
	// order does not open it, its retransmissions do.
	const pair = "knock 7500, 7000 within 5s opens ssh for 60s\n"
	if f := get(pair, "ascending sweep of every TCP port:"); f.Fails() {
		t.Errorf("7500, 7000, ascending: %+v, want closed", f)
	}
	if f := get(pair, "ascending sweep of every TCP port, each unanswered probe sent again"); !f.Fails() {
		t.Errorf("7500, 7000, ascending with retransmissions: %+v, want opened", f)
	}
	// nmap's default scan probes common ports only: the seed's 1600,
	// not its guards.
	fs, err := Scans(irtest.Load(t, seed), Options{Backend: "nft", Seed: 1, Trials: 100, Common: []lang.Port{{Proto: lang.TCP, Num: 22}, {Proto: lang.TCP, Num: 1600}, {Proto: lang.TCP, Num: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	if f := fs[len(fs)-1]; !strings.HasPrefix(f.Attack, "random-order scan of the 3 most common TCP ports") || f.Opened != 1 || !strings.Contains(f.Hint, "1600 is its #2") {
		t.Errorf("the seed, nmap's default scan: %+v, want opened by every scanner", f)
	}
	four := "knock 11731, 42124, 28253, 59919 within 1s opens ssh for 60s\n"
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
		// Forged knocks out of order start a victim's sequence over; two
		// knocks have no other knock of their own to reset with.
		{"knock 7000, 8000, 9000 opens ssh for 60s\n", []Effect{Closes}},
		{"knock 7000, 8000 opens ssh for 60s\n", nil},
		{"knock 7000, 8000 strict opens ssh for 60s\n", []Effect{Closes}},
		// Forged SYNs from another address use up a shared limit.
		{"limit http 10/1s family ipv4\n", []Effect{Closes}},
		{"limit ssh 3/60s per source/24\n", []Effect{Closes}},
		{"limit ssh 3/60s per source/24 ban 10m\n", []Effect{Bans, Closes}},
		{"limit ssh 3/60s per source/32/128 family ipv6\n", nil},
		{"limit ssh 3/60s per source/32/64 family ipv6\n", []Effect{Closes}},
	} {
		for _, be := range []string{"nft", "iptables"} {
			fs, err := Spoofing(irtest.Load(t, tc.src), Options{Backend: be})
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
	p := irtest.Load(t, "knock 1600 opens ssh for 60s\n")
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

// TestReplay: a static sequence, sent again from another address after
// the client's door closed, opens the door: reported, not failed.
func TestReplay(t *testing.T) {
	for _, src := range []string{
		"knock 1600 opens ssh for 60s\n",
		"knock 7000, udp/8000, 9000 within 5s strict opens ssh for 30s\n",
		"knock 1600 opens ssh for 60s family ipv6\n",
		"knock 1600 from 192.0.2.0/24 opens ssh for 60s\n",
	} {
		for _, be := range []string{"nft", "iptables"} {
			fs, err := Replay(irtest.Load(t, src), Options{Backend: be, Keep: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != 1 || fs[0].Effect != Replays || fs[0].Fails() || len(fs[0].Packets) == 0 {
				t.Errorf("%q (%s): %+v, want one replay, not failed, with its packets", src, be, fs)
			}
		}
	}
}

// TestReplaySecret: a secret knock's token, sent again from another
// address and from the client's own once its door closed, opens nothing:
// the finding says the replay is fixed (Opened 0). With a model that
// keeps a used token, it would open (checked by breaking the delete).
func TestReplaySecret(t *testing.T) {
	for _, src := range []string{
		"knock udp/62201 secret \"/etc/kwl/ssh.key\" opens ssh for 10s\n",
		"knock udp/62201 secret \"/etc/kwl/ssh.key\" opens ssh for 60s family ipv6\n",
		"knock udp/62201 from 192.0.2.0/24 secret \"/etc/kwl/ssh.key\" opens ssh once for 5s per source/24\n",
	} {
		fs, err := Replay(irtest.Load(t, src), Options{Backend: "nft", Keep: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].Effect != Replays || fs[0].Opened != 0 || fs[0].Fails() || len(fs[0].Packets) < 4 {
			t.Errorf("%q: %+v, want one replay, fixed, with its packets", src, fs)
			continue
		}
		var tokens int
		for _, pk := range fs[0].Packets {
			if pk.PayloadN == 16 {
				tokens++
			}
		}
		if want := map[bool]int{true: 3, false: 2}[strings.Contains(src, "10s") || strings.Contains(src, "5s")]; tokens != want {
			t.Errorf("%q: %d token datagrams, want %d (the client's, the copies)", src, tokens, want)
		}
	}
	// Scans send no token: the door stays closed; a guess costs 2^129/2883.
	pol := irtest.Load(t, "knock udp/62201 secret \"/etc/kwl/ssh.key\" opens ssh for 60s\n")
	fs, err := Scans(pol, Options{Backend: "nft", Seed: 1, Trials: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Opened > 0 {
			t.Errorf("a scan opened a secret knock: %+v", f)
		}
	}
	gs, err := Guessing(pol, Options{Backend: "nft"})
	if err != nil || len(gs) != 1 || gs[0].Cost < 1e35 || gs[0].Cost > 1.2e35*2 {
		t.Errorf("guessing a token: %+v %v", gs, err)
	}
}

// TestSource: an attack sends from inside a from list, of the family it
// names.
func TestSource(t *testing.T) {
	pf := func(s string) []netip.Prefix {
		var out []netip.Prefix
		for _, f := range strings.Fields(s) {
			out = append(out, netip.MustParsePrefix(f))
		}
		return out
	}
	for _, tc := range []struct {
		f    lang.Family
		from string
		want string
	}{
		{lang.Both, "", "203.0.113.66"},
		{lang.IPv6, "", "2001:db8:113::66"},
		{lang.Both, "192.0.2.0/24", "192.0.2.66"},
		{lang.Both, "192.0.2.7/32", "192.0.2.7"},
		{lang.Both, "192.0.2.128/26", "192.0.2.129"},
		{lang.IPv6, "192.0.2.0/24 2001:db8:7::/48", "2001:db8:7::66"},
		{lang.IPv4, "2001:db8:7::/48", ""},
	} {
		a, ok := source(tc.f, pf(tc.from), scanner4, scanner6)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("source(%v, %q) = %q, want %q", tc.f, tc.from, got, tc.want)
		}
	}
}

// TestFloodSources: the forged sources each take a key of their own, none
// the victim's, inside the door's from list; too small a list fills
// nothing.
func TestFloodSources(t *testing.T) {
	for _, tc := range []struct {
		src string
		n   int
		ok  bool
	}{
		{"knock 1600 opens ssh for 60s\n", 65535, true},
		{"knock 1600 opens ssh for 60s per source/24\n", 65535, true},
		{"knock 1600 opens ssh for 60s family ipv6\n", 65535, true},
		{"knock 1600 opens ssh for 60s per source/32/64 family ipv6\n", 65535, true},
		{"knock 1600 from 203.0.113.0/24 opens ssh for 60s\n", 100, true},
		{"knock 1600 from 203.0.113.0/24 opens ssh for 60s\n", 65535, false},
		{"knock 1600 opens ssh for 60s per source/16\n", 65535, true}, // the victim's /16 and every other
		{"knock 1600 opens ssh for 60s per source/15\n", 65535, false},
	} {
		d := irtest.Load(t, tc.src).Doors[0]
		victim, _ := source(d.Family, d.From, victim4, victim6)
		flood, ok := floodSources(d, victim, tc.n)
		if ok != tc.ok {
			t.Errorf("%q, %d: ok %v, want %v", tc.src, tc.n, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		mask := d.Mask4
		if victim.Is6() {
			mask = d.Mask6
		}
		key := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, mask).Masked() }
		seen := map[netip.Prefix]bool{key(victim): true}
		for i := range tc.n {
			a := flood(i)
			if seen[key(a)] || a.Is4() != victim.Is4() || !admits(d.Family, d.From, a) {
				t.Fatalf("%q: source %d, %v: a key seen before, or not one the door admits", tc.src, i, a)
			}
			seen[key(a)] = true
		}
	}
}
