package sim

import (
	"testing"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// tokenRules: a datagram to udp/62201 of exactly 16 payload bytes whose
// payload is in @tok uses the token up (delete) and opens @door; tcp/22
// is accepted from sources in @door; other datagrams to 62201 dropped. The kernel suite's
// TestTokenSetFacts pins the same mechanism on the kernel.
func tokenRules() []*nft.Rule {
	tok := nft.Key{Field: nft.Token}
	return []*nft.Rule{
		rule(&nft.Match{Field: nft.CtState, Values: []any{"established", "related"}}, accept),
		rule(&nft.Match{Field: nft.L4Proto, Values: []any{lang.UDP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(62201)}},
			&nft.Match{Field: nft.UDPLength, Values: []any{uint16(24)}}, &nft.Lookup{Set: "tok", Key: tok},
			&nft.Dynset{Op: nft.Delete, Set: "tok", Key: tok}, &nft.Dynset{Op: nft.Add, Set: "door", Key: saddr}, drop),
		rule(&nft.Match{Field: nft.L4Proto, Values: []any{lang.UDP}}, &nft.Match{Field: nft.THDport, Values: []any{uint16(62201)}}, drop),
		rule(tcpPort(22), &nft.Lookup{Set: "door", Key: saddr}, accept),
		rule(tcpPort(22), drop),
	}
}

func token(b byte) [16]byte {
	var t [16]byte
	for i := range t {
		t[i] = b
	}
	return t
}

// TestTokenSet: a token opens the door once; a replay, a forged token, a
// longer datagram that starts with a token, a shorter one, one whose
// capture cut its payload, and a token past its timeout open nothing.
func TestTokenSet(t *testing.T) {
	sets := []*nft.Set{
		{Name: "tok", Type: nft.TokenKey, Elements: []nft.Element{
			{Key: token(1), Timeout: time.Hour}, {Key: token(2), Timeout: time.Hour}, {Key: token(3), Timeout: time.Second}}},
		{Name: "door", Type: nft.IPv4Addr, Timeout: time.Minute},
	}
	s := newNFTSim(t, sets, tokenRules()...)
	d := newDriver(t, s)
	n := 0
	dgram := func(at time.Duration, from int, payload [16]byte, size int) string {
		n++
		pk := &capture.Packet{Time: at, Src: src(from), Dst: fw, Proto: lang.UDP, SPort: uint16(40000 + n), DPort: 62201,
			UDPLen: uint16(8 + size), Payload: payload, PayloadN: uint8(min(size, 16)), Len: 28 + size}
		return d.send(pk)
	}
	cut := func(at time.Duration, from int, payload [16]byte) string {
		n++
		pk := &capture.Packet{Time: at, Src: src(from), Dst: fw, Proto: lang.UDP, SPort: uint16(40000 + n), DPort: 62201,
			UDPLen: 24, Payload: payload, PayloadN: 10, Len: 44}
		return d.send(pk)
	}
	var got string
	got += d.syn(0, src(1), 22)                    // d: closed
	got += dgram(ms(10), 1, token(1), 16)          // d: the token
	got += d.syn(ms(20), src(1), 22)               // a
	got += dgram(ms(30), 2, token(1), 16)          // d: a replay, from another source
	got += d.syn(ms(40), src(2), 22)               // d
	got += dgram(ms(50), 2, token(9), 16)          // d: forged
	got += dgram(ms(60), 2, token(2), 17)          // d: longer
	got += cut(ms(70), 2, token(2))                // d: cut by the capture
	got += d.syn(ms(80), src(2), 22)               // d
	got += dgram(2*time.Second, 2, token(3), 16)   // d: timed out at 1s
	got += d.syn(2*time.Second+ms(10), src(2), 22) // d
	got += dgram(2*time.Second+ms(20), 2, token(2), 16)
	got += d.syn(2*time.Second+ms(30), src(2), 22) // a
	if want := "dda" + "dd" + "ddd" + "d" + "dd" + "da"; got != want {
		t.Errorf("verdicts %s, want %s", got, want)
	}
	// A fresh simulation loads the tokens again.
	s.Reset()
	if got := dgram(0, 3, token(1), 16) + d.syn(ms(1), src(3), 22); got != "da" {
		t.Errorf("after Reset: %s, want da", got)
	}
}
