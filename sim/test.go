package sim

import (
	"fmt"
	"net/netip"
	"strings"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim/capture"
)

// The firewall's own addresses in test blocks: a step without `to ADDR`
// is addressed to the one of its source's family. They are the addresses
// the kernel test suite gives its firewall namespace.
var (
	TestFirewall4 = netip.MustParseAddr("198.51.100.1")
	TestFirewall6 = netip.MustParseAddr("2001:db8:51::1")
)

// firstEphemeral is the first source port a test gives a New step without
// a port of its own; later steps count up, skipping ports that steps
// name explicitly (the kernel suite resolves ports the same way).
const firstEphemeral = 40000

// TestResult is the outcome of one test block on one backend.
type TestResult struct {
	Test    *lang.Test
	Backend string
	Steps   []StepResult
	// Err is set when the policy could not be simulated on the backend
	// (lowering failed); Steps is then empty.
	Err error
}

// StepResult is the outcome of one step.
type StepResult struct {
	Step    *lang.Step
	Packet  capture.Packet // the packet the step sent
	Expect  lang.Verdict   // Step.ExpectFor(backend)
	Verdict lang.Verdict
	Rule    lang.Ref // the statement that decided; zero when none did
	Comment string   // the deciding rule's comment, or the policy that decided
	State   string   // conntrack state of the packet: new, established, invalid
	Explain string   // what the packet read and wrote, "; "-separated
	OK      bool
}

// Passed reports whether every step got its expected verdict.
func (r *TestResult) Passed() bool {
	if r.Err != nil {
		return false
	}
	for i := range r.Steps {
		if !r.Steps[i].OK {
			return false
		}
	}
	return true
}

// Failures returns the steps whose verdict was not the expected one.
func (r *TestResult) Failures() []*StepResult {
	var out []*StepResult
	for i := range r.Steps {
		if !r.Steps[i].OK {
			out = append(out, &r.Steps[i])
		}
	}
	return out
}

// Message describes a failed step for a person: where the step is, what
// it sent, the expected and the actual verdict, which statement decided,
// and the explanation.
func (sr *StepResult) Message() string {
	var b strings.Builder
	pos := ""
	if sr.Step != nil && sr.Step.Pos.IsValid() {
		pos = sr.Step.Pos.String() + ": "
	}
	fmt.Fprintf(&b, "%sstep at %s: %s (ct %s): expected %s, got %s", pos, fmtTime(sr.Packet.Time),
		describePacket(&sr.Packet), sr.State, sr.Expect, sr.Verdict)
	switch {
	case !sr.Rule.IsZero():
		fmt.Fprintf(&b, " by the statement at %s", sr.Rule)
		if sr.Comment != "" {
			fmt.Fprintf(&b, " (%s)", sr.Comment)
		}
	case sr.Comment != "":
		fmt.Fprintf(&b, " (%s)", sr.Comment)
	}
	if sr.Explain != "" {
		fmt.Fprintf(&b, "\n    because: %s", sr.Explain)
	}
	return b.String()
}

func describePacket(p *capture.Packet) string {
	kind := "datagram"
	switch {
	case p.Proto == lang.TCP:
		kind = flagString(p.Flags)
	case p.PayloadN > 0:
		kind = fmt.Sprintf("datagram of %d bytes starting %x", p.UDPLen-nft.UDPHeader, p.Payload[:min(4, p.PayloadN)])
	}
	return fmt.Sprintf("%s %s %s -> %s", p.Proto, kind,
		netip.AddrPortFrom(p.Src, p.SPort), netip.AddrPortFrom(p.Dst, p.DPort))
}

// RunTest runs a test block of a checked policy on a backend of the
// registry (compile.Lookup), from an empty state. Each step is one packet: a New step a
// TCP SYN or a UDP datagram from a fresh source port, a Data step a TCP
// ACK (or a UDP datagram) on the latest flow from the same source to the
// same port. After an accepted New step the server answers (SYN-ACK, or a
// UDP reply), so that the flow becomes ESTABLISHED, as a host behind the
// firewall would.
func RunTest(p *lang.Policy, t *lang.Test, backend string) TestResult {
	s, diags := New(backend, p, Options{Hosts: []netip.Addr{TestFirewall4, TestFirewall6}, Explain: true})
	if s == nil {
		return TestResult{Test: t, Backend: backend, Err: diags.Err()}
	}
	return s.Run(t)
}

// RunTests runs every test block of a checked policy on each of the
// backends, as RunTest does: the results are in the order of the tests
// and, for each test, of backends.
func RunTests(p *lang.Policy, backends []string) []TestResult {
	var out []TestResult
	for _, t := range p.Tests {
		for _, b := range backends {
			out = append(out, RunTest(p, t, b))
		}
	}
	return out
}

// Run runs a test block on s from an empty state (s is reset first). The
// Sim should have been made with Options.Hosts holding TestFirewall4 and
// TestFirewall6, and Explain for explanations.
func (s *Sim) Run(t *lang.Test) TestResult {
	s.clock = t.Start
	s.Reset()
	res := TestResult{Test: t, Backend: s.backend, Steps: make([]StepResult, 0, len(t.Steps))}
	type flowKey struct {
		src  netip.Addr
		port lang.Port
	}
	latest := map[flowKey]uint16{}
	used := map[uint16]bool{}
	for _, st := range t.Steps {
		if st.SPort != 0 {
			used[st.SPort] = true
		}
	}
	next := firstEphemeral
	for i, st := range t.Steps {
		src := st.Src.Unmap()
		dst := st.Dst.Unmap()
		if !dst.IsValid() {
			dst = TestFirewall4
			if !src.Is4() {
				dst = TestFirewall6
			}
		}
		k := flowKey{src, st.Port}
		sport := st.SPort
		if sport == 0 {
			if sp, ok := latest[k]; ok && st.Kind == lang.Data {
				sport = sp
			} else {
				for next <= 65535 && used[uint16(next)] {
					next++
				}
				if next > 65535 {
					// lang.MaxTestSteps keeps a checked test from getting here.
					res.Err = fmt.Errorf("%s: test %q: the step needs a fresh source port and ports %d to 65535 are all taken; split the test",
						st.Pos, t.Name, firstEphemeral)
					res.Steps = nil
					return res
				}
				sport = uint16(next)
				used[sport] = true
			}
		}
		if st.Kind == lang.New {
			latest[k] = sport
		}
		pk := capture.Packet{N: i + 1, Time: st.At, Src: src, Dst: dst, Proto: st.Port.Proto,
			SPort: sport, DPort: st.Port.Num, Len: 60}
		if st.Token != lang.NoToken {
			tok, err := s.tokenOf(st)
			if err != nil {
				res.Err, res.Steps = fmt.Errorf("%s: %w", st.Pos, err), nil
				return res
			}
			pk.UDPLen, pk.Payload, pk.PayloadN = nft.UDPHeader+secret.TokenSize, tok, secret.TokenSize
			pk.Len = 20 + int(pk.UDPLen)
			if !src.Is4() {
				pk.Len += 20
			}
		}
		if st.Port.Proto == lang.TCP {
			pk.Flags = capture.SYN
			if st.Kind == lang.Data {
				pk.Flags = capture.ACK | capture.PSH
			}
			if st.HasFlags {
				pk.Flags = capture.TCPFlags(st.Flags)
			}
		}
		r := s.Eval(&pk)
		expect := st.ExpectFor(s.backend)
		sr := StepResult{Step: st, Packet: pk, Expect: expect, Verdict: r.Verdict, Rule: r.Rule,
			Comment: r.Comment, State: r.State, Explain: r.Explain(), OK: r.Verdict == expect}
		res.Steps = append(res.Steps, sr)
		if r.Verdict == lang.Accept && st.Kind == lang.New {
			s.answer(&pk)
		}
	}
	return res
}

// answer sends the server's reply to an accepted New step: a UDP
// datagram back, or what a listening TCP socket answers to the packet
// (HostAnswer), from the host the flow reached (the DNAT target for a
// forwarded service).
func (s *Sim) answer(pk *capture.Packet) {
	flags, ok := HostAnswer(pk)
	if !ok {
		return
	}
	t := tuple{src: pk.Src.Unmap(), dst: pk.Dst.Unmap(), sport: pk.SPort, dport: pk.DPort, proto: pk.Proto}
	c := s.ct.find(&t, jiffies(s.now))
	if c == nil || c.orig != t {
		return
	}
	r := c.reply()
	rp := capture.Packet{N: pk.N, Time: pk.Time, Src: r.src, Dst: r.dst, Proto: pk.Proto,
		SPort: r.sport, DPort: r.dport, Len: 60}
	rp.Flags = flags
	s.Eval(&rp)
}

// HostAnswer returns the flags of what a host's listening TCP socket
// sends back to a packet of a flow it does not know (tcp_rcv_state_process
// in LISTEN): a RST to an ACK, a SYN-ACK to a SYN without FIN or RST,
// nothing to the rest (a RST, a FIN alone, an Xmas or a null packet is
// discarded). A UDP datagram is answered (0, true): the test servers
// echo.
func HostAnswer(pk *capture.Packet) (capture.TCPFlags, bool) {
	if pk.Proto != lang.TCP {
		return 0, true
	}
	f := pk.Flags
	switch {
	case f&capture.RST != 0:
		return 0, false
	case f&capture.ACK != 0:
		return capture.RST, true
	case f&capture.SYN != 0 && f&capture.FIN == 0:
		return capture.SYN | capture.ACK, true
	}
	return 0, false
}
