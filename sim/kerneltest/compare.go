//go:build linux

package kerneltest

import (
	"fmt"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Margin is how far every packet of a scenario stays from a timing
// boundary: moving any packet, or all packets from one on, by up to Margin
// earlier or later does not change a single verdict the model predicts.
// Scheduling jitter (well under a millisecond here, a few under load) and
// the kernel's jiffy (4 ms at HZ=250) are far smaller.
const Margin = 100 * time.Millisecond

// SentMargin is how far from every timing boundary the packets must be
// at the times the firewall's kernel received them for a run to be
// compared (the plan keeps Margin; a busy machine sends late and eats into
// it). Those times are the kernel's own receive timestamps, taken just
// before netfilter ran, so what is left to cover is the kernel's clock
// ticking in 4 ms jiffies at a phase the simulator does not know. A run
// that misses it is repeated, not compared: the comparison itself stays
// exact on every packet.
const SentMargin = 10 * time.Millisecond

// Model predicts what a backend does with each packet: the simulator.
// The packets carry the times they were (or would be) sent in At.
type Model interface {
	Predict(pkts []Packet) ([]Prediction, error)
}

// Prediction is the model's verdict on one packet and why.
type Prediction struct {
	Verdict lang.Verdict
	Rule    lang.Ref
	Explain string
	// Blocked is the 1-based index of the dropped first packet of this
	// packet's flow, or 0 (replay.Outcome.Blocked): kwl sim takes such a
	// packet as never sent, while the harness sends it and the kernel
	// evaluates it, and so does the model.
	Blocked int
}

// Disagreement is a packet on which the kernel and the model differ.
type Disagreement struct {
	N       int // 1-based index in the scenario
	Packet  Packet
	Sent    time.Duration
	Kernel  lang.Verdict // Accept when the packet got past kwl, else Drop
	Model   Prediction
	Context string // the scenario's packets up to this one, with both verdicts
}

func (d Disagreement) String() string {
	return fmt.Sprintf("packet %d (%s): kernel %s, simulator %s (rule %s; %s)\n%s",
		d.N, describe(d.Packet, d.Sent), d.Kernel, d.Model.Verdict, ruleString(d.Model.Rule), d.Model.Explain, d.Context)
}

func ruleString(r lang.Ref) string {
	if r.IsZero() {
		return "none"
	}
	return r.String()
}

func describe(p Packet, sent time.Duration) string {
	kind := "new"
	if p.Kind == lang.Data {
		kind = "data"
	}
	if p.HasFlags {
		kind += " flags " + p.Flags.String()
	}
	return fmt.Sprintf("at %v from %s port %d %s %s", sent.Round(time.Millisecond), p.Src, p.SPort, p.Port, kind)
}

// kernelVerdict is the kernel's verdict as the probe and the capture saw
// it: a packet that passed was accepted, one that the firewall answered
// with a reset or a port unreachable was rejected, and any other was
// dropped.
func kernelVerdict(o Outcome) lang.Verdict {
	switch {
	case o.Passed:
		return lang.Accept
	case o.Rejected:
		return lang.Reject
	}
	return lang.Drop
}

// sentPackets returns the packets with At set to when they were actually
// sent: the times the model must be given.
func sentPackets(out []Outcome) []Packet {
	pkts := make([]Packet, len(out))
	for i, o := range out {
		pkts[i] = o.Packet
		pkts[i].At = o.Sent
	}
	return pkts
}

// Compare runs the model on the packets at their actual send times and
// returns the packets on which it disagrees with the kernel.
func Compare(m Model, out []Outcome) ([]Disagreement, error) {
	ds, _, err := compare(m, out)
	return ds, err
}

// compare is Compare, which also returns the predictions.
func compare(m Model, out []Outcome) ([]Disagreement, []Prediction, error) {
	pred, err := m.Predict(sentPackets(out))
	if err != nil {
		return nil, nil, err
	}
	if len(pred) != len(out) {
		return nil, nil, fmt.Errorf("model predicted %d packets of %d", len(pred), len(out))
	}
	var ds []Disagreement
	for i, o := range out {
		if k := kernelVerdict(o); k != pred[i].Verdict {
			ds = append(ds, Disagreement{N: i + 1, Packet: o.Packet, Sent: o.Sent, Kernel: k, Model: pred[i], Context: table(out, pred, i)})
		}
	}
	return ds, pred, nil
}

// table renders the packets up to and including the i-th with both
// verdicts, for a disagreement report.
func table(out []Outcome, pred []Prediction, last int) string {
	var b strings.Builder
	for i := 0; i <= last && i < len(out); i++ {
		o := out[i]
		mark := " "
		if kernelVerdict(o) != pred[i].Verdict {
			mark = "!"
		}
		blocked := ""
		if n := pred[i].Blocked; n > 0 {
			blocked = fmt.Sprintf(" (blocked flow of %d)", n)
		}
		fmt.Fprintf(&b, "  %s %3d %-58s kernel %-6s sim %-6s %s%s\n", mark, i+1, describe(o.Packet, o.Sent), kernelVerdict(o), pred[i].Verdict, ruleString(pred[i].Rule), blocked)
	}
	return b.String()
}

// Drift returns the largest delay of a packet against its plan.
func Drift(out []Outcome) time.Duration {
	var max time.Duration
	for _, o := range out {
		if d := o.Sent - o.At; d > max {
			max = d
		}
	}
	return max
}

// Robust reports whether the model's verdicts on the planned packets stay
// the same when packets move by margin: each packet alone, and each packet
// with all that follow it, earlier and later (never before the packet that
// precedes it). It returns a description of the first change found.
func Robust(m Model, pkts []Packet, margin time.Duration) (bool, string, error) {
	base, err := m.Predict(pkts)
	if err != nil {
		return false, "", err
	}
	try := func(what string, shifted []Packet) (bool, string, error) {
		p, err := m.Predict(shifted)
		if err != nil {
			return false, "", err
		}
		for i := range p {
			if p[i].Verdict != base[i].Verdict {
				return false, fmt.Sprintf("%s changes packet %d (%s) from %s to %s", what, i+1, describe(pkts[i], pkts[i].At), base[i].Verdict, p[i].Verdict), nil
			}
		}
		return true, "", nil
	}
	for j := range pkts {
		for _, sign := range []time.Duration{-1, 1} {
			d := sign * margin
			// Packet j alone.
			s := append([]Packet(nil), pkts...)
			s[j].At = clamp(s, j, s[j].At+d)
			if ok, why, err := try(fmt.Sprintf("moving packet %d by %v", j+1, d), s); !ok || err != nil {
				return ok, why, err
			}
			// Packet j and all after it.
			s = append([]Packet(nil), pkts...)
			if j > 0 && d < 0 && s[j].At+d < s[j-1].At {
				d = s[j-1].At - s[j].At
			}
			for k := j; k < len(s); k++ {
				s[k].At += d
			}
			if j == 0 && d < 0 {
				continue // moving everything says nothing
			}
			if ok, why, err := try(fmt.Sprintf("moving packets %d.. by %v", j+1, d), s); !ok || err != nil {
				return ok, why, err
			}
		}
	}
	return true, "", nil
}

// clamp keeps t between the times of packet j's neighbours, so that a
// shift never reorders packets.
func clamp(s []Packet, j int, t time.Duration) time.Duration {
	if j > 0 && t < s[j-1].At {
		t = s[j-1].At
	}
	if j+1 < len(s) && t > s[j+1].At {
		t = s[j+1].At
	}
	if t < 0 {
		t = 0
	}
	return t
}
