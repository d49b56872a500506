//go:build linux

package kerneltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/audit"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// auditCases are policies whose attacks kwl audit finds, one of each
// kind: a scan that opens a lone knock, a random-order scan past guard
// ports (at 10,000 probes/s, so that it lasts seconds), a forged close, a
// forged reset of a sequence, a forged ban, a spent shared limit and a
// replayed knock.
var auditCases = []struct {
	name, policy string
	rate         time.Duration
}{
	{"lone", "knock 1600 opens ssh for 60s\n", time.Millisecond},
	{"guarded", "knock 1600 opens ssh for 60s\nclose ssh on 1599, 1601\n", 100 * time.Microsecond},
	{"sequence", "knock 7000, 8000, 9000 within 5s opens ssh for 60s\n", time.Millisecond},
	{"ban", "limit ssh 3/5s per source ban 1m\n", time.Millisecond},
	{"shared", "limit ssh 3/10s per source/24\n", time.Millisecond},
	{"replay", "knock 1600 opens ssh for 2s\n", time.Millisecond},
}

// auditScenarios runs kwl audit's attacks on auditCases, writes each one
// that had its effect as kwl audit --emit does, and reads it back as a
// scenario: the attack's packets as the pcap holds them, and, for the
// last packet (the connection that shows the effect), the verdict the
// audit found: accept for a door opened or replayed, drop for a door
// closed, a victim banned or a limit spent. Attacks of more packets than
// a scan's (a full store) are left to the catalog's set-full and
// eviction scenarios, and those that last longer than 10s (the replay
// after a door of a minute) to the cases that attack the same faster.
func auditScenarios(t *testing.T) []Scenario {
	var scs []Scenario
	for _, c := range auditCases {
		pol, diags := lang.Load(c.name+".kwl", []byte(c.policy))
		if diags.HasErrors() {
			t.Fatalf("%s: %v", c.name, diags)
		}
		for _, b := range Backends {
			fs, err := audit.Run(pol, audit.Options{Backend: b, Trials: 50, Seed: 1, Rate: c.rate, Keep: true})
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			for i, f := range fs {
				if len(f.Packets) == 0 || len(f.Packets) > 100 || f.Packets[len(f.Packets)-1].Time > 10*time.Second {
					continue
				}
				pkts, err := viaPcap(f.Packets)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				last := byte('d')
				if f.Effect == audit.Opens || f.Effect == audit.Replays {
					last = 'a'
				}
				scs = append(scs, Scenario{
					Name:     fmt.Sprintf("%s/%s-%s-%d", c.name, b, f.Effect, i+1),
					Policy:   c.policy,
					Backends: []string{b},
					Packets:  pkts,
					Want:     strings.Repeat("?", len(pkts)-1) + string(last),
				})
			}
		}
	}
	return scs
}

// viaPcap writes an attack's packets as a pcap and reads them back as a
// scenario's packets.
func viaPcap(in []capture.Packet) ([]Packet, error) {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, time.Unix(1_800_000_000, 0))
	if err != nil {
		return nil, err
	}
	for i := range in {
		if err := w.Write(&in[i]); err != nil {
			return nil, err
		}
	}
	r, err := capture.Open(&buf)
	if err != nil {
		return nil, err
	}
	var out []Packet
	for {
		var p capture.Packet
		if err := r.Next(&p); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		q := Packet{At: p.Time, Src: p.Src, SPort: p.SPort, Dst: p.Dst, Port: lang.Port{Proto: p.Proto, Num: p.DPort}, Kind: lang.New}
		if p.Proto == lang.TCP {
			q.Flags, q.HasFlags = p.Flags, true
		}
		out = append(out, q)
	}
}

// TestAuditScenarios checks, without the kernel, that every attack of
// auditScenarios is a scenario the suite can run: robust to Margin on
// its backend's model, and predicted to have the effect the audit found.
func TestAuditScenarios(t *testing.T) {
	scs := auditScenarios(t)
	cases := map[string]bool{}
	for _, sc := range scs {
		cases[sc.Name[:strings.IndexByte(sc.Name, '/')]] = true
	}
	if len(cases) != len(auditCases) {
		t.Errorf("attacks of %d policies of %d", len(cases), len(auditCases))
	}
	for _, sc := range scs {
		for _, tg := range checkRobust(t, &sc) {
			pred, err := tg.Model.Predict(sc.Packets)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := "adr"[pred[len(pred)-1].Verdict], sc.Want[len(sc.Want)-1]; got != want {
				t.Errorf("%s (%s): the model's last verdict %c, the audit's %c", sc.Name, tg.Backend, got, want)
			}
		}
	}
}

// TestAuditKernel replays kwl audit's attacks (auditScenarios) on the
// kernel: each has there the effect the audit found in the simulator.
// TestDifferential compares them packet by packet.
func TestAuditKernel(t *testing.T) {
	needRoot(t)
	for _, sc := range auditScenarios(t) {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			checkWant(t, sc)
		})
	}
}
