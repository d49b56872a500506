//go:build linux

package kerneltest

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// TestUnanswered holds the harness to its premise: a run in which a flow's
// next packet reached the firewall before the firewall answered the flow is
// not compared (its datagram is still ct new to the kernel).
func TestUnanswered(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cl, fw := netip.MustParseAddr("203.0.113.7"), FW4
	port := lang.Port{Proto: lang.UDP, Num: 27015}
	in := func(tag uint32) []byte {
		return build(pkt{src: cl, dst: fw, proto: lang.UDP, sport: 41003, dport: port.Num, tag: tag, payload: []byte("x")})
	}
	echo := build(pkt{src: fw, dst: cl, proto: lang.UDP, sport: port.Num, dport: 41003, payload: []byte("x")})
	out := []Outcome{
		{Packet: Packet{Src: cl, Dst: fw, SPort: 41003, Port: port, Kind: lang.New}, Seen: true, Passed: true, rx: t0},
		{Packet: Packet{Src: cl, Dst: fw, SPort: 41003, Port: port, Kind: lang.Data}, Seen: true, Passed: true, rx: t0.Add(300 * time.Millisecond)},
	}
	for _, tc := range []struct {
		name  string
		reply time.Duration // when the echo left the firewall; <0: never
		want  string
	}{
		{"answered before the next packet", time.Millisecond, ""},
		{"answered after it", 400 * time.Millisecond, "packet 2"},
		{"never answered", -1, "packet 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capture := []Frame{{Time: t0, Data: in(1)}, {Time: t0.Add(300 * time.Millisecond), Data: in(2)}}
			if tc.reply >= 0 {
				capture = append(capture, Frame{Time: t0.Add(tc.reply), Out: true, Data: echo})
			}
			got := unanswered(out, capture)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("unanswered = %q, want %q", got, tc.want)
			}
		})
	}
	// A flow whose first packet was dropped owes no answer.
	dropped := append([]Outcome(nil), out...)
	dropped[0].Passed, dropped[1].Passed = false, false
	if got := unanswered(dropped, nil); got != "" {
		t.Errorf("unanswered of a dropped flow = %q, want none", got)
	}
}
