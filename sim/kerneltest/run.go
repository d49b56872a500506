//go:build linux

package kerneltest

import (
	"fmt"
	"time"

	"kwl.dev/kwl/lang"
)

// Target is one backend as the harness drives it: how to load a policy
// into a lab's firewall, and the simulator that predicts it.
type Target struct {
	Backend string           // "nft" or "iptables"
	Load    func(*Lab) error // loads the compiled ruleset
	Model   Model
}

// Result is one scenario run on one backend.
type Result struct {
	Outcomes      []Outcome
	Disagreements []Disagreement
	// Runs counts kernel runs: more than one when the packets of a run
	// were sent so late that they came within SentMargin of a timing
	// boundary, or a flow was answered after its next packet (see
	// unanswered), and the run was repeated.
	Runs  int
	Drift time.Duration // of the run compared
	// Inconsistent lists harness self-check failures: a TCP connection
	// attempt that passed kwl and got no SYN-ACK, or one that was dropped
	// yet answered though no packet of its flow passed.
	Inconsistent []string
	// Labs names the namespaces the runs used (all deleted by Run), for
	// a check that none is left.
	Labs []string
	// Capture holds the frames on the firewall's side of the run compared.
	Capture []Frame
	// Blocked counts the packets the model found of a flow whose first
	// packet was dropped (Prediction.Blocked), BlockedAccepted those of
	// them the kernel accepted.
	Blocked, BlockedAccepted int
}

// maxRuns bounds the repetitions of a drifting run.
const maxRuns = 4

// Run sends the packets (resolved with Resolve) to the kernel through the
// target's ruleset in a fresh lab, then asks the target's model about the
// same packets at the times they were sent, and compares. Unless boundary
// is set, the packets' planned times must be robust to Margin and their
// actual times to SentMargin (see Robust).
func Run(tg Target, pkts []Packet, boundary bool) (*Result, error) {
	if !boundary {
		ok, why, err := Robust(tg.Model, pkts, Margin)
		if err != nil {
			return nil, fmt.Errorf("%s: margin check: %w", tg.Backend, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s: packets too close to a timing boundary: %s", tg.Backend, why)
		}
	}
	res := &Result{}
	var out []Outcome
	why := ""
	for res.Runs < maxRuns {
		res.Runs++
		var err error
		out, res.Capture, err = runOnce(tg, pkts, &res.Labs)
		if err != nil {
			return nil, err
		}
		res.Drift = Drift(out)
		// An unanswered flow breaks the premise of every verdict after
		// it, boundary scenarios included.
		if w := unanswered(out, res.Capture); w != "" {
			why = w
			continue
		}
		if boundary {
			why = ""
			break
		}
		ok, w, err := Robust(tg.Model, sentPackets(out), SentMargin)
		if err != nil {
			return nil, fmt.Errorf("%s: margin check: %w", tg.Backend, err)
		}
		if ok {
			why = ""
			break
		}
		why = fmt.Sprintf("the packets never left far enough from a timing boundary (last run up to %v late: %s)", res.Drift, w)
	}
	if why != "" {
		return nil, fmt.Errorf("%s: in %d runs %s: machine too busy", tg.Backend, res.Runs, why)
	}
	res.Outcomes = out
	res.Inconsistent = selfCheck(out)
	ds, pred, err := compare(tg.Model, out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tg.Backend, err)
	}
	res.Disagreements = ds
	for i, p := range pred {
		if p.Blocked > 0 {
			res.Blocked++
			if kernelVerdict(out[i]) == lang.Accept {
				res.BlockedAccepted++
			}
		}
	}
	return res, nil
}

func runOnce(tg Target, pkts []Packet, labs *[]string) (out []Outcome, capture []Frame, err error) {
	l, err := NewLab()
	if err != nil {
		return nil, nil, err
	}
	*labs = append(*labs, l.FW.Name, l.Client.Name)
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := tg.Load(l); err != nil {
		return nil, nil, fmt.Errorf("%s: load: %w", tg.Backend, err)
	}
	if l.Inside != nil {
		*labs = append(*labs, l.Inside.Name)
	}
	out, err = l.Replay(pkts)
	return out, l.Capture(), err
}

// unanswered checks the premise of the model's verdicts on the packets of
// an established flow: the firewall (or the host behind it) answered the
// flow's admitted packet before the next packet of the flow (data, or a
// retransmitted connection attempt) reached it, since that answer is
// what makes conntrack take the flow as established. A listener that a busy machine runs late breaks it: a UDP
// datagram sent before the echo is still ct new to the kernel, and counts
// against a limit a second time. It returns what went wrong, or "".
func unanswered(out []Outcome, capture []Frame) string {
	answered := map[flowKey]time.Time{}
	for _, f := range capture {
		if !f.Out {
			continue
		}
		p, ok := parseFrame(f.Data)
		if !ok || (p.proto != lang.TCP && p.proto != lang.UDP) {
			continue
		}
		k := flowKey{src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, proto: p.proto}
		if _, seen := answered[k]; !seen {
			answered[k] = f.Time
		}
	}
	passed := map[flowKey]bool{}
	for i, o := range out {
		k := flowKey{src: o.Src, sport: o.SPort, dst: o.Dst, dport: o.Port.Num, proto: o.Port.Proto}
		if passed[k] && o.Seen {
			if t, ok := answered[k]; !ok || !t.Before(o.rx) {
				return fmt.Sprintf("packet %d (%s) reached the firewall before its flow was answered", i+1, describe(o.Packet, o.Sent))
			}
		}
		// What the servers answer: a datagram, a connection attempt.
		if o.Passed && (o.Port.Proto == lang.UDP && o.Kind == lang.New || o.attempt()) {
			passed[k] = true
		}
	}
	return ""
}

// selfCheck compares the probe with the answers the client saw.
func selfCheck(out []Outcome) []string {
	var bad []string
	key := func(o Outcome) flowKey {
		return flowKey{src: o.Src, sport: o.SPort, dst: o.Dst, dport: o.Port.Num, proto: o.Port.Proto}
	}
	passedFlow := map[flowKey]bool{}
	for _, o := range out {
		if o.Passed {
			passedFlow[key(o)] = true
		}
	}
	for i, o := range out {
		if !o.Seen {
			bad = append(bad, fmt.Sprintf("packet %d (%s) missing from the firewall's capture: no kernel timestamp", i+1, describe(o.Packet, o.Sent)))
		}
		k := key(o)
		if o.attempt() {
			if o.Passed && !o.SynAck {
				bad = append(bad, fmt.Sprintf("packet %d (%s) passed but was not answered", i+1, describe(o.Packet, o.Sent)))
			}
			if !o.Passed && o.SynAck && !passedFlow[k] {
				bad = append(bad, fmt.Sprintf("packet %d (%s) was dropped but answered", i+1, describe(o.Packet, o.Sent)))
			}
		}
	}
	return bad
}
