//go:build linux

package kerneltest

import (
	"strings"
	"testing"
	"time"
)

// boundaryGap is how far the boundary scenarios' probes stand from the
// instant a door, a sequence step or a limit's window ends: far more than
// a jiffy, close enough that a backend whose window were a tick, or a
// fraction of a second, longer or shorter than the statement's would
// give another verdict.
const boundaryGap = 30 * time.Millisecond

// boundaryScenarios end a door, a sequence step's window, a limit's window
// and a ban 30 ms before and 30 ms after a probe, with the same expected
// verdicts on both backends: a duration means the same interval on each.
// Packets are in time order. They are not in the catalog, whose packets keep Margin from every
// boundary.
func boundaryScenarios() []Scenario {
	return []Scenario{{
		Name:   "boundary-door",
		Want:   "ddad",
		Policy: "knock 1600 opens ssh for 1s\n",
		Packets: Steps(`
			0s      198.51.100.10 1600
			300ms   198.51.100.20 1600
			970ms   198.51.100.10 22         # 30 ms before its door closes
			1.33s   198.51.100.20 22         # 30 ms after
		`),
	}, {
		Name:   "boundary-sequence-step",
		Want:   "dddadd",
		Policy: "knock 7000, 8000 within 1s opens ssh for 3s\n",
		Packets: Steps(`
			0s      198.51.100.10 7000
			100ms   198.51.100.20 7000
			970ms   198.51.100.10 8000       # within the step's window
			1.1s    198.51.100.10 22
			1.13s   198.51.100.20 8000       # 30 ms too late
			1.2s    198.51.100.20 22
		`),
	}, {
		Name:   "boundary-limit-window",
		Want:   "adadaa",
		Policy: "limit ssh 1/1s per source\n",
		Packets: Steps(`
			0s      198.51.100.10 22
			970ms   198.51.100.10 22         # the window of 0s still holds it
			1.03s   198.51.100.10 22         # it has left the window
			1.98s   198.51.100.10 22         # the window of 1.03s still holds it
			2.06s   198.51.100.10 22
			2.1s    198.51.100.20 22
		`),
	}}
}

// TestBoundaryKernel runs the boundary scenarios on the kernel and in the
// simulator of each backend and checks both against the expected verdicts.
// A run in which the kernel received a probe on the wrong side of its
// boundary (a late send) is repeated.
func TestBoundaryKernel(t *testing.T) {
	needRoot(t)
	for _, sc := range boundaryScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			sc.Packets = Resolve(sc.Packets)
			tgs, err := targets(&sc)
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range tgs {
				want := sc.Expect(tg.Backend)
				t.Run(tg.Backend, func(t *testing.T) {
					if tg.Model != nil {
						pr, err := tg.Model.Predict(sc.Packets)
						if err != nil {
							t.Fatal(err)
						}
						var got strings.Builder
						for _, p := range pr {
							got.WriteByte("adr"[p.Verdict])
						}
						if got.String() != want {
							t.Errorf("simulator: got %s, want %s", got.String(), want)
						}
					}
					for try := 1; ; try++ {
						var labs []string
						out, _, err := runOnce(tg, sc.Packets, &labs)
						checkGone(t, labs...)
						if err != nil {
							t.Fatal(err)
						}
						if late := lateBy(sc.Packets, out); late > boundaryGap/2 && try < 4 {
							t.Logf("try %d: a packet reached the kernel %s late; again", try, late)
							continue
						}
						var got strings.Builder
						for _, o := range out {
							got.WriteByte("adr"[kernelVerdict(o)])
						}
						if got.String() != want {
							t.Errorf("kernel: got %s, want %s\n%s", got.String(), want, sc.Repro(tg.Backend, out))
						}
						return
					}
				})
			}
		})
	}
}

// lateBy returns how much later than planned, relative to the first
// packet, the kernel received the packet that was latest.
func lateBy(plan []Packet, out []Outcome) time.Duration {
	var worst time.Duration
	for i, o := range out {
		if i == 0 {
			continue
		}
		d := (o.Sent - out[0].Sent) - (plan[i].At - plan[0].At)
		if d < 0 {
			d = -d
		}
		worst = max(worst, d)
	}
	return worst
}
