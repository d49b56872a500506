package sim

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// These tests pin the kernel facts of KERNEL.md §1 that the models copy,
// on hand-built rulesets, each with the source it comes from. The kernel
// suite (sim/kerneltest) checks the same facts on the running kernel.

var fw = netip.MustParseAddr("198.51.100.1")

func src(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }

// driver sends packets to a Sim and records verdicts as letters.
type driver struct {
	t     *testing.T
	s     *Sim
	sport uint16
}

func newDriver(t *testing.T, s *Sim) *driver { return &driver{t: t, s: s, sport: 30000} }

// syn sends a new connection attempt and returns "a", "d" or "r".
func (d *driver) syn(at time.Duration, from netip.Addr, port uint16) string {
	d.sport++
	return d.send(&capture.Packet{Time: at, Src: from, Dst: fw, Proto: lang.TCP, SPort: d.sport, DPort: port, Flags: capture.SYN})
}

func (d *driver) send(p *capture.Packet) string {
	r := d.s.Eval(p)
	return r.Verdict.String()[:1]
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func newNFTSim(t *testing.T, sets []*nft.Set, rules ...*nft.Rule) *Sim {
	t.Helper()
	rs := &nft.Ruleset{Table: &nft.Table{Family: "inet", Name: "t", Sets: sets, Chains: []*nft.Chain{{
		Name: "input", Type: "filter", Hook: nft.Input, Policy: nft.Accept, Rules: rules}}}}
	s, err := NewNFT(rs, Options{Hosts: []netip.Addr{fw}, Explain: testing.Verbose()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newIptSim(t *testing.T, rules ...*iptables.Rule) *Sim {
	t.Helper()
	rs := &iptables.Ruleset{V4: &iptables.Family{Tables: []*iptables.Table{{Name: "filter", Chains: []*iptables.Chain{{
		Name: "INPUT", Builtin: true, Policy: "ACCEPT", Rules: rules}}}}}}
	s, err := NewIptables(rs, Options{Hosts: []netip.Addr{fw}, Explain: testing.Verbose()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tcpPort(p uint16) []nft.Expr {
	return []nft.Expr{&nft.Match{Field: nft.L4Proto, Values: []any{lang.TCP}}, &nft.Match{Field: nft.THDport, Values: []any{p}}}
}

func ctNew() nft.Expr { return &nft.Match{Field: nft.CtState, Values: []any{"new"}} }

func rule(exprs ...any) *nft.Rule {
	r := &nft.Rule{}
	for _, x := range exprs {
		switch x := x.(type) {
		case []nft.Expr:
			r.Exprs = append(r.Exprs, x...)
		case nft.Expr:
			r.Exprs = append(r.Exprs, x)
		}
	}
	return r
}

var (
	accept = &nft.Verdict{Kind: nft.Accept}
	drop   = &nft.Verdict{Kind: nft.Drop}
	saddr  = nft.Key{Field: nft.IPSaddr}
)

// doorRules: tcp/1600 updates (or adds to) @door and drops; tcp/22 is
// accepted from sources in @door, dropped from others.
func doorRules(op nft.DynOp) []*nft.Rule {
	return []*nft.Rule{
		rule(&nft.Match{Field: nft.CtState, Values: []any{"established", "related"}}, accept),
		rule(tcpPort(1600), &nft.Dynset{Op: op, Set: "door", Key: saddr}, drop),
		rule(tcpPort(22), &nft.Lookup{Set: "door", Key: saddr}, accept),
		rule(tcpPort(22), drop),
	}
}

func TestNFTSets(t *testing.T) {
	a, b, c := src(1), src(2), src(3)
	tests := []struct {
		name string
		set  nft.Set
		op   nft.DynOp
		run  func(d *driver) string
		want string
	}{{
		// nft_dynset_eval: update refreshes the expiration of an existing
		// element (net/netfilter/nft_dynset.c, NFT_DYNSET_OP_UPDATE).
		name: "update refreshes", set: nft.Set{Timeout: 10 * time.Second}, op: nft.Update,
		run: func(d *driver) string {
			return d.syn(0, a, 1600) + d.syn(5*time.Second, a, 1600) + d.syn(12*time.Second, a, 22) + d.syn(15*time.Second, a, 22)
		},
		want: "dd" + "ad",
	}, {
		// add never refreshes an existing element (nft_dynset.c: only
		// NFT_DYNSET_OP_UPDATE touches the timeout; wiki "Updating sets
		// from the packet path").
		name: "add does not refresh", set: nft.Set{Timeout: 10 * time.Second}, op: nft.Add,
		run: func(d *driver) string {
			return d.syn(0, a, 1600) + d.syn(5*time.Second, a, 1600) + d.syn(9*time.Second, a, 22) + d.syn(10*time.Second, a, 22)
		},
		want: "dd" + "ad",
	}, {
		// An element is expired when now >= expiration, in jiffies
		// (nft_set_elem_expired, time_after_eq64); 60 s is 15000 jiffies.
		name: "expiry at now >= expiration", set: nft.Set{Timeout: 60 * time.Second}, op: nft.Update,
		run: func(d *driver) string {
			return d.syn(time.Second, a, 1600) + d.syn(61*time.Second-ms(4), a, 22) + d.syn(61*time.Second, a, 22)
		},
		want: "d" + "ad",
	}, {
		// A full set creates nothing and the dynset expression does not
		// match, so the rest of the rule (the drop) does not run
		// (nft_dynset_new: atomic_add_unless(&set->nelems, 1, set->size)).
		name: "full set: no element, no match", set: nft.Set{Size: 2, Timeout: time.Minute}, op: nft.Update,
		run: func(d *driver) string {
			return d.syn(0, a, 1600) + d.syn(ms(10), b, 1600) + d.syn(ms(20), c, 1600) +
				d.syn(ms(100), a, 22) + d.syn(ms(110), b, 22) + d.syn(ms(120), c, 22)
		},
		want: "dda" + "aad",
	}, {
		// Expired elements count toward size until GC removes them
		// (nft_rhash_cmp skips them, nelems keeps them; pinned on the
		// kernel by sim/kerneltest); GC runs every second by default.
		name: "expired elements count until GC", set: nft.Set{Size: 2, Timeout: ms(500)}, op: nft.Update,
		run: func(d *driver) string {
			return d.syn(ms(100), a, 1600) + d.syn(ms(200), b, 1600) +
				d.syn(ms(700), c, 1600) + d.syn(ms(750), c, 22) + // full: not added, not dropped
				d.syn(ms(1100), c, 1600) + d.syn(ms(1150), c, 22) // after the GC at 1 s
		},
		want: "dd" + "ad" + "da",
	}, {
		// Without a timeout in the rule or the set, elements never expire
		// (nft_dynset_new sets no expiration).
		name: "no timeout: never expires", set: nft.Set{}, op: nft.Update,
		run: func(d *driver) string {
			return d.syn(0, a, 1600) + d.syn(100*time.Hour, a, 22)
		},
		want: "da",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := tc.set
			set.Name, set.Type = "door", nft.IPv4Addr
			d := newDriver(t, newNFTSim(t, []*nft.Set{&set}, doorRules(tc.op)...))
			if got := tc.run(d); got != tc.want {
				t.Errorf("verdicts %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNFTDelete(t *testing.T) {
	// delete removes the element and always matches (nft_dynset.c,
	// NFT_DYNSET_OP_DELETE).
	a := src(1)
	set := &nft.Set{Name: "door", Type: nft.IPv4Addr, Timeout: time.Minute}
	rules := append(doorRules(nft.Update)[:2:2],
		rule(tcpPort(1599), &nft.Dynset{Op: nft.Delete, Set: "door", Key: saddr}, drop))
	rules = append(rules, doorRules(nft.Update)[2:]...)
	d := newDriver(t, newNFTSim(t, []*nft.Set{set}, rules...))
	got := d.syn(0, a, 1599) + d.syn(ms(1), a, 1600) + d.syn(ms(2), a, 22) + d.syn(ms(3), a, 1599) + d.syn(ms(4), a, 22)
	if want := "dd" + "a" + "dd"; got != want {
		t.Errorf("verdicts %s, want %s", got, want)
	}
}

func TestNFTLimit(t *testing.T) {
	a, b := src(1), src(2)
	over := func(burst uint32) *nft.Limit {
		return &nft.Limit{Rate: 3, Unit: time.Minute, Burst: burst, Over: true}
	}
	t.Run("burst 0 means 5, the bucket starts full", func(t *testing.T) {
		// nft_limit_init: burst 0 from nft becomes
		// NFT_LIMIT_PKT_BURST_DEFAULT (5); tokens = tokens_max.
		d := newDriver(t, newNFTSim(t, nil, rule(tcpPort(22), ctNew(), over(0), drop)))
		var got strings.Builder
		for i := 0; i < 7; i++ {
			got.WriteString(d.syn(ms(20*i), a, 22))
		}
		if want := "aaaaadd"; got.String() != want {
			t.Errorf("verdicts %s, want %s", got.String(), want)
		}
	})
	t.Run("a packet without tokens takes none", func(t *testing.T) {
		// nft_limit_eval: when tokens < cost nothing is taken; cost is
		// 60 s / 3 = 20 s of tokens.
		d := newDriver(t, newNFTSim(t, nil, rule(tcpPort(22), ctNew(), over(3), drop)))
		got := d.syn(0, a, 22) + d.syn(0, a, 22) + d.syn(0, a, 22) // the burst
		for i := 1; i <= 19; i++ {
			got += d.syn(time.Duration(i)*time.Second, a, 22) // refused, take nothing
		}
		got += d.syn(20*time.Second, a, 22) + d.syn(20*time.Second+ms(1), a, 22)
		if want := "aaa" + strings.Repeat("d", 19) + "ad"; got != want {
			t.Errorf("verdicts %s, want %s", got, want)
		}
	})
	t.Run("each set element gets its own full bucket", func(t *testing.T) {
		// nft_limit_clone: a new element's bucket is full.
		set := &nft.Set{Name: "lim", Type: nft.IPv4Addr, Timeout: time.Minute}
		d := newDriver(t, newNFTSim(t, []*nft.Set{set}, rule(tcpPort(22), ctNew(),
			&nft.Dynset{Op: nft.Update, Set: "lim", Key: saddr, Limit: over(3)}, drop)))
		got := d.syn(0, a, 22) + d.syn(ms(1), a, 22) + d.syn(ms(2), a, 22) + d.syn(ms(3), a, 22) +
			d.syn(ms(4), b, 22) + d.syn(ms(5), b, 22) + d.syn(ms(6), b, 22) + d.syn(ms(7), b, 22)
		if want := "aaad" + "aaad"; got != want {
			t.Errorf("verdicts %s, want %s", got, want)
		}
	})
}

// recentRule is an iptables rule on tcp/port, NEW only, with a recent match.
func recentRule(port uint16, rc iptables.Recent, target iptables.TargetKind) *iptables.Rule {
	if rc.Name == "" {
		rc.Name = "L"
	}
	return &iptables.Rule{Proto: lang.TCP, DPorts: []uint16{port}, CtState: []string{"NEW"}, Recent: &rc,
		Target: iptables.Target{Kind: target}}
}

func knockRules(check iptables.Recent) []*iptables.Rule {
	return []*iptables.Rule{
		{CtState: []string{"ESTABLISHED", "RELATED"}, Target: iptables.Target{Kind: iptables.ACCEPT}},
		recentRule(1600, iptables.Recent{Op: iptables.Set}, iptables.DROP),
		recentRule(22, check, iptables.ACCEPT),
		{Proto: lang.TCP, DPorts: []uint16{22}, Target: iptables.Target{Kind: iptables.DROP}},
	}
}

func TestRecent(t *testing.T) {
	rcheck60 := iptables.Recent{Op: iptables.Rcheck, Seconds: 60}
	tests := []struct {
		name  string
		rules []*iptables.Rule
		run   func(d *driver) string
		want  string
	}{{
		// recent_entry_init: at ip_list_tot (100) entries the LRU head
		// is evicted, whatever its age (net/netfilter/xt_recent.c).
		name: "LRU evicts the least recently seen at 100", rules: knockRules(rcheck60),
		run: func(d *driver) string {
			var b strings.Builder
			for i := 0; i < 101; i++ {
				b.WriteString(d.syn(ms(2*i), src(i), 1600))
			}
			return b.String() + d.syn(ms(400), src(0), 22) + d.syn(ms(401), src(1), 22) + d.syn(ms(402), src(100), 22)
		},
		want: strings.Repeat("d", 101) + "daa",
	}, {
		// --rcheck neither stamps nor moves the entry in the LRU, so a
		// door that is only checked is evicted first (recent_mt).
		name: "rcheck does not refresh the LRU position", rules: knockRules(rcheck60),
		run: func(d *driver) string {
			var b strings.Builder
			for i := 0; i < 100; i++ {
				b.WriteString(d.syn(ms(2*i), src(i), 1600))
			}
			b.WriteString(d.syn(ms(300), src(0), 22)) // checked: still the LRU head
			b.WriteString(d.syn(ms(302), src(100), 1600))
			return b.String()[100:] + d.syn(ms(400), src(0), 22) + d.syn(ms(401), src(1), 22)
		},
		want: "ad" + "da",
	}, {
		// --seconds: stamps >= now - seconds*HZ count, so the window is
		// inclusive, in whole jiffies (recent_mt: time_after(time, stamp)
		// skips only older stamps).
		name: "the --seconds window is inclusive", rules: knockRules(rcheck60),
		run: func(d *driver) string {
			return d.syn(time.Second, src(1), 1600) + d.syn(61*time.Second, src(1), 22) + d.syn(61*time.Second+ms(4), src(1), 22)
		},
		want: "d" + "ad",
	}, {
		// --update stamps only when the rule matches: failed updates
		// leave the single stamp alone, so hitcount 2 is never reached
		// (recent_mt: "XT_RECENT_UPDATE && ret").
		name: "--update stamps only when it matches",
		rules: append(knockRules(iptables.Recent{Op: iptables.Update, Seconds: 60, Hitcount: 2})[:2],
			recentRule(22, iptables.Recent{Op: iptables.Update, Seconds: 60, Hitcount: 2}, iptables.ACCEPT),
			&iptables.Rule{Proto: lang.TCP, DPorts: []uint16{22}, Target: iptables.Target{Kind: iptables.DROP}}),
		run: func(d *driver) string {
			return d.syn(0, src(1), 1600) + d.syn(time.Second, src(1), 22) + d.syn(2*time.Second, src(1), 22) +
				d.syn(3*time.Second, src(1), 1600) + d.syn(4*time.Second, src(1), 22)
		},
		want: "d" + "dd" + "d" + "a",
	}, {
		// ! --update stamps when the match fails, since the stamp follows
		// the inverted result (recent_mt: ret = !ret, then XOR invert).
		name: "! --update stamps when it does not match",
		rules: []*iptables.Rule{
			recentRule(1600, iptables.Recent{Op: iptables.Set}, iptables.DROP),
			recentRule(22, iptables.Recent{Op: iptables.Update, Seconds: 60, Hitcount: 3, Invert: true}, iptables.NONE),
			recentRule(22, iptables.Recent{Op: iptables.Rcheck, Seconds: 60, Hitcount: 3}, iptables.DROP),
		},
		run: func(d *driver) string {
			return d.syn(0, src(1), 1600) + d.syn(time.Second, src(1), 22) + d.syn(2*time.Second, src(1), 22)
		},
		want: "d" + "ad",
	}, {
		// Shorewall's Limit 3/60: --set then --update --hitcount 4 ->
		// DROP. Every packet through the rules is a hit, dropped or not:
		// at 61 s the stamps of 1, 2, 3 s (3 s was dropped) and 61 s make
		// four (KERNEL.md §1.1, derived from recent_mt).
		name: "dropped packets count as hits",
		rules: []*iptables.Rule{
			recentRule(22, iptables.Recent{Op: iptables.Set}, iptables.NONE),
			recentRule(22, iptables.Recent{Op: iptables.Update, Seconds: 60, Hitcount: 4}, iptables.DROP),
		},
		run: func(d *driver) string {
			var b strings.Builder
			for i := 0; i < 4; i++ {
				b.WriteString(d.syn(time.Duration(i)*time.Second, src(1), 22))
			}
			return b.String() + d.syn(61*time.Second, src(1), 22) + d.syn(200*time.Second, src(1), 22)
		},
		want: "aaad" + "d" + "a",
	}, {
		// --remove deletes the entry (recent_mt, XT_RECENT_REMOVE).
		name: "--remove",
		rules: append([]*iptables.Rule{recentRule(1599, iptables.Recent{Op: iptables.Remove}, iptables.DROP)},
			knockRules(rcheck60)...),
		run: func(d *driver) string {
			return d.syn(0, src(1), 1600) + d.syn(ms(1), src(1), 1599) + d.syn(ms(2), src(1), 22)
		},
		want: "ddd",
	}, {
		// --mask is applied to the key: sources of one /24 share an entry.
		name: "--mask",
		rules: []*iptables.Rule{
			recentRule(1600, iptables.Recent{Op: iptables.Set, Mask: 24}, iptables.DROP),
			recentRule(22, iptables.Recent{Op: iptables.Rcheck, Seconds: 60, Mask: 24}, iptables.ACCEPT),
			{Proto: lang.TCP, DPorts: []uint16{22}, Target: iptables.Target{Kind: iptables.DROP}},
		},
		run: func(d *driver) string {
			return d.syn(0, src(1), 1600) + d.syn(ms(1), src(2), 22) + d.syn(ms(2), src(256), 22)
		},
		want: "d" + "ad",
	}, {
		// The list takes its mask from the rule that creates it: a later
		// rule's --mask is ignored (recent_mt_check copies the mask only
		// when it creates the table).
		name: "--mask of the first rule only", rules: knockRules(iptables.Recent{Op: iptables.Rcheck, Seconds: 60, Mask: 24}),
		run: func(d *driver) string {
			return d.syn(0, src(1), 1600) + d.syn(ms(1), src(2), 22)
		},
		want: "dd",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, newIptSim(t, tc.rules...))
			got := tc.run(d)
			if got != tc.want {
				t.Errorf("verdicts %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRecentRing(t *testing.T) {
	// The ring holds roundup_pow_of_two(hitcount) stamps, or 32 without a
	// hitcount, sized by the most demanding rule on the list
	// (recent_mt_check).
	for _, tc := range []struct {
		hitcounts []int
		want      int
	}{{[]int{0}, 32}, {[]int{4}, 4}, {[]int{5}, 8}, {[]int{0, 4}, 32}, {[]int{40, 4}, 64}} {
		tb := newRecentTable("x")
		for _, h := range tc.hitcounts {
			tb.grow(h)
		}
		if got := tb.ringMask + 1; got != tc.want {
			t.Errorf("hitcounts %v: ring %d, want %d", tc.hitcounts, got, tc.want)
		}
	}
}

func TestXtLimit(t *testing.T) {
	// xt_limit: burst defaults to 5 and the credits start full
	// (limit_mt_check); 3/minute refills one packet every 20 s, in
	// jiffies; a refused packet takes no credit.
	d := newDriver(t, newIptSim(t, &iptables.Rule{Proto: lang.TCP, DPorts: []uint16{22},
		Limit: &iptables.Limit{Rate: 3, Unit: "minute"}, Target: iptables.Target{Kind: iptables.RETURN}},
		&iptables.Rule{Proto: lang.TCP, DPorts: []uint16{22}, Target: iptables.Target{Kind: iptables.DROP}}))
	var got strings.Builder
	for i := 0; i < 7; i++ {
		got.WriteString(d.syn(ms(i), src(1), 22))
	}
	got.WriteString(d.syn(20*time.Second-ms(8), src(1), 22))
	got.WriteString(d.syn(20*time.Second+ms(8), src(1), 22))
	if want := "aaaaadd" + "da"; got.String() != want {
		t.Errorf("verdicts %s, want %s", got.String(), want)
	}
}

func TestConntrack(t *testing.T) {
	a := src(1)
	s := newNFTSim(t, nil, rule(&nft.Match{Field: nft.CtState, Values: []any{"established"}}, accept),
		rule(tcpPort(22), drop))
	ev := func(p capture.Packet) Result { return s.Eval(&p) }
	udp := func(at time.Duration, from, to netip.Addr, sp, dp uint16) capture.Packet {
		return capture.Packet{Time: at, Src: from, Dst: to, Proto: lang.UDP, SPort: sp, DPort: dp}
	}
	t.Run("NEW until a reply has been seen", func(t *testing.T) {
		// resolve_normal_ct: original-direction packets are NEW until
		// IPS_SEEN_REPLY, then ESTABLISHED; replies are ESTABLISHED.
		s.Reset()
		var states []string
		for _, p := range []capture.Packet{
			udp(0, a, fw, 5000, 53), udp(time.Second, a, fw, 5000, 53), // no answer yet: NEW twice
			udp(2*time.Second, fw, a, 53, 5000), // the reply (from the firewall: output)
			udp(3*time.Second, a, fw, 5000, 53),
		} {
			states = append(states, ev(p).State)
		}
		if got, want := strings.Join(states, ","), "new,new,established,established"; got != want {
			t.Errorf("states %s, want %s", got, want)
		}
	})
	t.Run("a dropped first packet leaves no entry", func(t *testing.T) {
		// Confirmation runs last (NF_IP_PRI_CONNTRACK_CONFIRM): a flow
		// whose first packet is dropped is not in the table, and its
		// next packet is NEW again.
		s.Reset()
		syn := capture.Packet{Time: 0, Src: a, Dst: fw, Proto: lang.TCP, SPort: 40000, DPort: 22, Flags: capture.SYN}
		if r := ev(syn); r.Verdict != lang.Drop || s.Flows() != 0 {
			t.Fatalf("verdict %s, %d flows; want drop and none", r.Verdict, s.Flows())
		}
		syn.Time = time.Second
		if r := ev(syn); r.State != "new" {
			t.Errorf("retransmitted SYN: state %s, want new", r.State)
		}
	})
	t.Run("UDP timeouts: 30 s unreplied", func(t *testing.T) {
		// nf_conntrack_proto_udp.c: UDP_CT_UNREPLIED 30 s.
		s.Reset()
		ev(udp(0, a, fw, 5000, 53))
		ev(udp(30*time.Second-ms(4), src(9), fw, 1, 1))
		n1 := s.Flows()
		ev(udp(30*time.Second, src(9), fw, 1, 2))
		if n1 != 2 || s.Flows() != 2 { // the first flow is gone, two others are live
			t.Errorf("flows %d then %d, want 2 and 2", n1, s.Flows())
		}
	})
	t.Run("TCP: SYN, SYN/ACK, ACK; RST closes", func(t *testing.T) {
		s.Reset()
		p := capture.Packet{Src: a, Dst: fw, Proto: lang.TCP, SPort: 40001, DPort: 80, Flags: capture.SYN}
		ev(p)
		r := capture.Packet{Src: fw, Dst: a, Proto: lang.TCP, SPort: 80, DPort: 40001, Flags: capture.SYN | capture.ACK}
		ev(r)
		p.Flags = capture.ACK
		c := s.ct.m[tuple{src: a, dst: fw, sport: 40001, dport: 80, proto: lang.TCP}]
		if got := ev(p).State; got != "established" || c.tcp != tcpEstablished {
			t.Fatalf("state %s (%s), want established", got, tcpStateNames[c.tcp])
		}
		// ESTABLISHED lasts 5 days (tcp_timeouts).
		p.Time = 4 * 24 * time.Hour
		if got := ev(p).State; got != "established" {
			t.Errorf("4 days later: %s", got)
		}
		p.Flags = capture.RST
		ev(p)
		p.Time += 11 * time.Second // CLOSE lasts 10 s
		p.Flags = capture.SYN
		if got := ev(p).State; got != "new" {
			t.Errorf("SYN after RST: %s, want new", got)
		}
	})
	t.Run("a SYN/ACK without a flow is INVALID", func(t *testing.T) {
		s.Reset()
		r := ev(capture.Packet{Src: a, Dst: fw, Proto: lang.TCP, SPort: 1, DPort: 22, Flags: capture.SYN | capture.ACK})
		if r.State != "invalid" || s.Flows() != 0 {
			t.Errorf("state %s, %d flows", r.State, s.Flows())
		}
	})
	t.Run("first packets of scans", func(t *testing.T) {
		// tcp_error's tcp_valid_flags, then tcp_new: a bare ACK is picked
		// up mid-stream (nf_conntrack_tcp_loose=1), everything else that
		// is not a SYN is INVALID and leaves no entry.
		const (
			F, S, R, P, A, U = capture.FIN, capture.SYN, capture.RST, capture.PSH, capture.ACK, capture.URG
			E, W             = capture.ECE, capture.CWR
		)
		for _, tc := range []struct {
			flags capture.TCPFlags
			want  string
		}{
			{S, "new"}, {S | U, "new"}, {S | P, "new"}, {S | E | W, "new"},
			{A, "new"}, {A | P, "new"}, {A | U, "new"},
			{0, "invalid"},         // null scan
			{F, "invalid"},         // FIN scan
			{F | P | U, "invalid"}, // Xmas scan
			{F | A, "invalid"}, {S | A, "invalid"}, {S | F, "invalid"}, {S | R, "invalid"},
			{R, "invalid"}, {R | A, "invalid"}, {U, "invalid"}, {P, "invalid"}, {0xff, "invalid"},
		} {
			s.Reset()
			r := ev(capture.Packet{Src: a, Dst: fw, Proto: lang.TCP, SPort: 1, DPort: 80, Flags: tc.flags})
			flows := 0
			if tc.want == "new" {
				flows = 1
			}
			if r.State != tc.want || s.Flows() != flows {
				t.Errorf("%s: state %s, %d flows; want %s, %d", flagString(tc.flags), r.State, s.Flows(), tc.want, flows)
			}
		}
	})
	t.Run("a bad flag combination on a flow is INVALID and changes nothing", func(t *testing.T) {
		// tcp_error runs for every packet, before the state machine.
		s.Reset()
		p := capture.Packet{Src: a, Dst: fw, Proto: lang.TCP, SPort: 40002, DPort: 80, Flags: capture.SYN}
		ev(p)
		ev(capture.Packet{Src: fw, Dst: a, Proto: lang.TCP, SPort: 80, DPort: 40002, Flags: capture.SYN | capture.ACK})
		p.Flags = capture.FIN | capture.PSH | capture.URG
		if got := ev(p).State; got != "invalid" {
			t.Errorf("Xmas on an established flow: %s, want invalid", got)
		}
		p.Flags = capture.ACK
		c := s.ct.m[tuple{src: a, dst: fw, sport: 40002, dport: 80, proto: lang.TCP}]
		if got := ev(p).State; got != "established" || c.tcp != tcpEstablished {
			t.Errorf("then an ACK: %s (%s), want established", got, tcpStateNames[c.tcp])
		}
	})
}

func TestTimeoutJiffies(t *testing.T) {
	// nf_msecs_to_jiffies64: milliseconds rounded down to jiffies, at
	// least one.
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{60 * time.Second, 15000}, {ms(5), 1}, {ms(1), 1}, {ms(7), 1}, {ms(8), 2}, {0, 0}} {
		if got := nftTimeout(tc.d); got != tc.want {
			t.Errorf("%v: %d jiffies, want %d", tc.d, got, tc.want)
		}
	}
}

func TestExplain(t *testing.T) {
	set := &nft.Set{Name: "door", Type: nft.IPv4Addr, Timeout: time.Minute}
	s := newNFTSim(t, []*nft.Set{set}, doorRules(nft.Update)...)
	s.opts.Explain = true
	p := capture.Packet{Time: time.Second, Src: src(1), Dst: fw, Proto: lang.TCP, SPort: 1, DPort: 1600, Flags: capture.SYN}
	r := s.Eval(&p)
	if want := "door: added 10.0.0.1, expires at 61s"; !strings.Contains(r.Explain(), want) {
		t.Errorf("explanation %q lacks %q", r.Explain(), want)
	}
	if r.Verdict != lang.Drop || r.Hook != HookInput {
		t.Errorf("%v in %v", r.Verdict, r.Hook)
	}
}

// TestExplainExactTime: explanations print times from integer
// nanoseconds, not through a float64 (31536005.100000001s).
func TestExplainExactTime(t *testing.T) {
	set := &nft.Set{Name: "door", Type: nft.IPv4Addr, Timeout: 8760 * time.Hour}
	s := newNFTSim(t, []*nft.Set{set}, doorRules(nft.Update)...)
	s.opts.Explain = true
	p := capture.Packet{Time: 5100 * time.Millisecond, Src: src(1), Dst: fw, Proto: lang.TCP, SPort: 1, DPort: 1600, Flags: capture.SYN}
	r := s.Eval(&p)
	if want := "door: added 10.0.0.1, expires at 31536005.1s"; !strings.Contains(r.Explain(), want) {
		t.Errorf("explanation %q lacks %q", r.Explain(), want)
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {61 * time.Second, "61s"}, {1373578999, "1.373578999s"}, {4 * time.Millisecond, "0.004s"}, {31536005100000000, "31536005.1s"}} {
		if got := fmtTime(tc.d); got != tc.want {
			t.Errorf("fmtTime(%d) = %s, want %s", tc.d, got, tc.want)
		}
	}
}
