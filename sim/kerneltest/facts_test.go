//go:build linux

package kerneltest

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestKernelFacts pins, on the running kernel and with hand-written
// rulesets, the facts of KERNEL.md §1 that the simulator's models copy.
// They do not use kwl at all: when one fails, the kernel has changed, not
// kwl.
func TestKernelFacts(t *testing.T) {
	needRoot(t)
	many := func(n int) []netip.Addr {
		var a []netip.Addr
		for i := 0; i < n; i++ {
			a = append(a, netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i)}))
		}
		return a
	}
	tests := []struct {
		name string
		nft  string
		ipt  string
		pkts []Packet
		want string // one letter per packet: a(ccept) or d(rop)
	}{{
		// xt_recent: at ip_list_tot (100) entries, inserting evicts the
		// least recently seen entry whatever its age
		// (net/netfilter/xt_recent.c, recent_mt).
		name: "xt_recent LRU evicts at 100",
		ipt: `*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 1600 -m conntrack --ctstate NEW -m recent --set --name door --rsource -j DROP
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --rcheck --seconds 60 --name door --rsource -j ACCEPT
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -j DROP
COMMIT
`,
		pkts: func() []Packet {
			var p []Packet
			srcs := many(101)
			for i, s := range srcs {
				p = append(p, Packet{At: time.Duration(i) * 2 * time.Millisecond, Src: s, Port: tcp(1600)})
			}
			for _, i := range []int{0, 1, 100} {
				p = append(p, Packet{At: 400 * time.Millisecond, Src: srcs[i], Port: tcp(22)})
			}
			return p
		}(),
		want: strings.Repeat("d", 101) + "daa",
	}, {
		// nft_dynset: when the set holds size elements no element is
		// created and the expression does not match, so the rest of the
		// rule (here the drop) does not run (net/netfilter/nft_dynset.c).
		name: "nft set full: update does not match",
		nft: `table inet t {
	set door { type ipv4_addr; size 2; flags dynamic,timeout; timeout 60s; }
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established accept
		tcp dport 1600 update @door { ip saddr } drop
		tcp dport 22 ip saddr @door accept
		tcp dport 22 drop
	}
}
`,
		pkts: func() []Packet {
			var p []Packet
			srcs := many(3)
			for i, s := range srcs {
				p = append(p, Packet{At: time.Duration(i) * 20 * time.Millisecond, Src: s, Port: tcp(1600)})
			}
			for i, s := range srcs {
				p = append(p, Packet{At: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond, Src: s, Port: tcp(22)})
			}
			return p
		}(),
		// The third knock is not dropped: the rule did not match.
		want: "dda" + "aad",
	}, {
		// KERNEL.md §1.2 left open whether expired elements that GC has
		// not collected yet still count toward size. They do: the lookup
		// skips them (nft_rhash_cmp) but nelems still holds them, so
		// nft_dynset_new cannot add (net/netfilter/nft_set_hash.c,
		// nft_rhash_update). gc-interval 1h keeps GC away; with the
		// default (1 s) the answer depends on when GC last ran.
		name: "nft expired elements count toward size until GC",
		nft: `table inet t {
	set door { type ipv4_addr; size 2; flags dynamic,timeout; timeout 1s; gc-interval 1h; }
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established accept
		tcp dport 1600 update @door { ip saddr } drop
		tcp dport 22 ip saddr @door accept
		tcp dport 22 drop
	}
}
`,
		pkts: Steps(`
			0s     198.51.100.100 1600
			20ms   198.51.100.101 1600
			200ms  198.51.100.100 22
			1.5s   198.51.100.100 22    # expired
			1.6s   198.51.100.102 1600  # the set is still full: not added, not dropped
			1.8s   198.51.100.102 22
			1.9s   198.51.100.100 1600  # nor can the expired key come back
			2.1s   198.51.100.100 22
		`),
		want: "dda" + "d" + "ad" + "ad",
	}, {
		// nft_limit: burst 0 from nft means the kernel default of 5, the
		// bucket starts full (net/netfilter/nft_limit.c, nft_limit_init).
		name: "nft limit rate 3/minute admits 5 at once",
		nft: `table inet t {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 22 ct state new limit rate over 3/minute drop
	}
}
`,
		pkts: func() []Packet {
			var p []Packet
			for i := 0; i < 7; i++ {
				p = append(p, Packet{At: time.Duration(i) * 20 * time.Millisecond, Src: c1, Port: tcp(22)})
			}
			return p
		}(),
		want: "aaaaadd",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			var err error
			if tc.nft != "" {
				err = l.LoadNft(tc.nft)
			} else {
				err = l.LoadIptables(tc.ipt, "")
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := l.Replay(Resolve(tc.pkts))
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for _, o := range out {
				got.WriteByte("adr"[kernelVerdict(o)])
			}
			if got.String() != tc.want {
				t.Errorf("verdicts\n got %s\nwant %s", got.String(), tc.want)
			}
		})
	}
}
