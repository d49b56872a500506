package client

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
)

// TestPlanFor: the door of the service that the host's family reaches,
// its knocks in order; a gap the windows do not allow, a service no
// knock opens and an ambiguous one are errors that say so.
func TestPlanFor(t *testing.T) {
	const src = "knock 7000, udp/8000, 9000 within 1s in 3s opens ssh for 30s family ipv4\n" +
		"knock 1600 opens ssh for 60s family ipv6\n" +
		"knock udp/62201 opens https for 10s\n"
	p := irtest.Load(t, src)
	v4, v6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:51::1")
	pl, err := PlanFor(p, "ssh", v4, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := []lang.Port{{Proto: lang.TCP, Num: 7000}, {Proto: lang.UDP, Num: 8000}, {Proto: lang.TCP, Num: 9000}}
	if !slices.Equal(pl.Knocks, want) || pl.Service != (lang.Port{Proto: lang.TCP, Num: 22}) || pl.Door.Pos.Line != 1 {
		t.Errorf("ssh over IPv4: %+v", pl)
	}
	if got := strings.Join(pl.Steps(), "; "); got != "a SYN to tcp 198.51.100.1:7000; an empty datagram to udp 198.51.100.1:8000 200ms later; a SYN to tcp 198.51.100.1:9000 200ms later" {
		t.Errorf("steps: %s", got)
	}
	if pl, err := PlanFor(p, "ssh", v6, time.Second); err != nil || pl.Door.Pos.Line != 2 || !strings.Contains(pl.Steps()[0], "[2001:db8:51::1]:1600") {
		t.Errorf("ssh over IPv6: %+v, %v", pl, err)
	}
	for _, tc := range []struct {
		service string
		host    netip.Addr
		gap     time.Duration
		want    string
	}{
		{"ssh", v4, 2 * time.Second, "within 1s: a gap of 2s is too long"},
		{"ssh", v4, 1500 * time.Millisecond, "within 1s"},
		{"ssh", netip.MustParseAddr("::ffff:198.51.100.1"), time.Second, ""},
		{"http", v4, time.Second, "no knock of the policy opens http (its knocks open ssh, https)"},
		{"", v4, time.Second, "the policy's knocks open ssh, https: name one"},
	} {
		_, err := PlanFor(p, tc.service, tc.host, tc.gap)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s via %v, gap %v: %v, want %q", tc.service, tc.host, tc.gap, err, tc.want)
		}
	}
	// The whole sequence in 3s: 3 knocks 1.6s apart take 3.2s.
	p2 := irtest.Load(t, "knock 7000, 8000, 9000 in 3s opens ssh for 30s\n")
	if _, err := PlanFor(p2, "", v4, 1600*time.Millisecond); err == nil || !strings.Contains(err.Error(), "the 3 knocks must be sent within 3s") {
		t.Errorf("in 3s, gap 1.6s: %v", err)
	}
	if _, err := PlanFor(irtest.Load(t, "limit ssh 3/60s per source\n"), "", v4, time.Second); err == nil || !strings.Contains(err.Error(), "no knock") {
		t.Errorf("a policy without knocks: %v", err)
	}
}
