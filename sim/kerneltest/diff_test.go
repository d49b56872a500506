//go:build linux

package kerneltest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim"
)

var (
	nRandom = flag.Int("kwl.random", 200, "number of randomized scenarios")
	seed0   = flag.Uint64("kwl.seed", 1, "seed of the first randomized scenario")
	only    = flag.String("kwl.backend", "", "run one backend only")
)

// tally counts what the suite compared, per backend.
type tally struct {
	mu            sync.Mutex
	scenarios     map[string]int
	packets       map[string]int
	disagreements map[string]int
	reruns        map[string]int
	capPackets    map[string]int
	capDisagree   map[string]int
	// Packets of blocked flows, and those of them the kernel accepted:
	// by the scenario's model and by the capture replay.
	blocked, blockedAccepted       map[string]int
	capBlocked, capBlockedAccepted map[string]int
	skipped                        []string
}

func (ta *tally) addCapture(backend string, cr capReplay) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.capPackets[backend] += cr.compared
	ta.capDisagree[backend] += len(cr.ds)
	ta.capBlocked[backend] += cr.blocked
	ta.capBlockedAccepted[backend] += cr.accepted
}

func newTally() *tally {
	return &tally{scenarios: map[string]int{}, packets: map[string]int{}, disagreements: map[string]int{}, reruns: map[string]int{}, capPackets: map[string]int{}, capDisagree: map[string]int{},
		blocked: map[string]int{}, blockedAccepted: map[string]int{}, capBlocked: map[string]int{}, capBlockedAccepted: map[string]int{}}
}

func (ta *tally) add(backend string, r *Result) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.scenarios[backend]++
	ta.packets[backend] += len(r.Outcomes)
	ta.disagreements[backend] += len(r.Disagreements)
	ta.reruns[backend] += r.Runs - 1
	ta.blocked[backend] += r.Blocked
	ta.blockedAccepted[backend] += r.BlockedAccepted
}

func (ta *tally) skip(why string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.skipped = append(ta.skipped, why)
}

func (ta *tally) report(t *testing.T, elapsed time.Duration) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var parts []string
	for _, b := range Backends {
		t.Logf("%s: %d scenarios, %d packets compared, %d disagreements, %d runs repeated (sent too near a boundary, or a flow answered late)",
			b, ta.scenarios[b], ta.packets[b], ta.disagreements[b], ta.reruns[b])
		t.Logf("%s: capture replay through sim/capture: %d packets compared, %d disagreements", b, ta.capPackets[b], ta.capDisagree[b])
		t.Logf("%s: of blocked flows (sent after their flow's first packet was dropped; kwl sim takes them as never sent): %d packets, %d accepted by the kernel; in the captures %d, %d accepted",
			b, ta.blocked[b], ta.blockedAccepted[b], ta.capBlocked[b], ta.capBlockedAccepted[b])
		parts = append(parts, fmt.Sprintf("%s %d packets %d disagreements (capture replay %d/%d)", b, ta.packets[b], ta.disagreements[b], ta.capPackets[b], ta.capDisagree[b]))
	}
	sort.Strings(ta.skipped)
	for _, s := range ta.skipped {
		t.Logf("not run: %s", s)
	}
	t.Logf("kerneltest summary: %s; %d skipped; %v", strings.Join(parts, "; "), len(ta.skipped), elapsed.Round(time.Second))
}

// TestDifferential runs every scenario (the catalog, the randomized ones,
// the test blocks of examples/) on the kernel and in the simulator, per
// backend, and fails on every packet where they disagree.
func TestDifferential(t *testing.T) {
	needRoot(t)
	ta := newTally()
	start := time.Now()
	t.Run("catalog", func(t *testing.T) {
		for _, sc := range Catalog() {
			t.Run(sc.Name, func(t *testing.T) {
				t.Parallel()
				runScenario(t, ta, sc)
			})
		}
	})
	t.Run("random", func(t *testing.T) {
		for i := 0; i < *nRandom; i++ {
			seed := *seed0 + uint64(i)
			t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
				t.Parallel()
				sc, ok := robustRandom(t, seed)
				if !ok {
					ta.skip(fmt.Sprintf("random seed %d: no robust timing found", seed))
					return
				}
				runScenario(t, ta, sc)
			})
		}
	})
	t.Run("audit", func(t *testing.T) {
		for _, sc := range auditScenarios(t) {
			t.Run(sc.Name, func(t *testing.T) {
				t.Parallel()
				runScenario(t, ta, sc)
			})
		}
	})
	t.Run("examples", func(t *testing.T) {
		for _, sc := range exampleScenarios(t, ta) {
			t.Run(sc.Name, func(t *testing.T) {
				t.Parallel()
				runScenario(t, ta, sc)
			})
		}
	})
	ta.report(t, time.Since(start))
}

// robustRandom draws random scenario seed until its times are robust on
// every backend, redrawing the times only; when a scenario's structure
// leaves no robust timing (a retry that must fall inside a token's refill,
// say) it takes the scenario of a derived seed (seed + k*100000), so that
// the suite always runs as many random scenarios as asked.
func robustRandom(t *testing.T, seed uint64) (Scenario, bool) {
	for k := uint64(0); k < 4; k++ {
		s := seed + k*100000
		for attempt := 0; attempt < 30; attempt++ {
			sc := Generate(s, attempt)
			sc.Packets = Resolve(sc.Packets)
			tgs, err := targets(&sc)
			if err != nil {
				t.Fatalf("%v\n%s", err, sc.String())
			}
			ok := true
			for _, tg := range tgs {
				if r, _, err := Robust(tg.Model, sc.Packets, Margin); err != nil {
					t.Fatalf("%v\n%s", err, sc.String())
				} else if !r {
					ok = false
					break
				}
			}
			if ok {
				if k > 0 {
					t.Logf("seed %d has no robust timing; running seed %d instead", seed, s)
				}
				return sc, true
			}
		}
	}
	return Scenario{}, false
}

func runScenario(t *testing.T, ta *tally, sc Scenario) {
	t.Helper()
	sc.Packets = Resolve(sc.Packets)
	pol, diags := lang.Load(sc.Name+".kwl", []byte(sc.Policy))
	if diags.HasErrors() {
		t.Fatalf("%v", diags)
	}
	tgs, err := targetsFor(&sc, pol)
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, tg := range tgs {
		if *only != "" && tg.Backend != *only {
			continue
		}
		t.Run(tg.Backend, func(t *testing.T) {
			t.Parallel()
			res, err := Run(tg, sc.Packets, sc.Boundary)
			if err != nil {
				t.Fatalf("%v\nscenario:\n%s", err, sc.String())
			}
			checkNoLeftovers(t, res)
			ta.add(tg.Backend, res)
			for _, s := range res.Inconsistent {
				t.Errorf("harness self-check: %s", s)
			}
			for _, d := range res.Disagreements {
				t.Errorf("kernel and simulator disagree on %s", d)
			}
			cr, err := replayCapture(tg.Model, pol, res)
			if err != nil {
				t.Errorf("capture replay: %v", err)
			}
			ta.addCapture(tg.Backend, cr)
			for _, d := range cr.ds {
				t.Errorf("capture replay: %s", d)
			}
			if len(res.Disagreements) > 0 {
				t.Logf("reproduction (kwl test --backend %s):\n%s", tg.Backend, sc.Repro(tg.Backend, res.Outcomes))
			}
			if len(res.Disagreements) > 0 || len(cr.ds) > 0 {
				path := filepath.Join(os.TempDir(), fmt.Sprintf("kwlk-%s-%s.pcap", strings.ReplaceAll(sc.Name, "/", "_"), tg.Backend))
				if err := WritePcap(path, res.Capture); err == nil {
					t.Logf("capture of the firewall's side: %s", path)
				}
			}
		})
	}
}

// checkNoLeftovers fails the test if a namespace of the run still exists.
func checkNoLeftovers(t *testing.T, res *Result) {
	t.Helper()
	checkGone(t, res.Labs...)
}

// exampleScenarios turns the test blocks of examples/*.kwl into scenarios
// where timing allows: a test whose steps are not robust to Margin (a step
// on a boundary on purpose), that lasts longer than maxExampleSpan, or that
// sends to an explicit other host is reported as not run.
func exampleScenarios(t *testing.T, ta *tally) []Scenario {
	files, _ := filepath.Glob("../../examples/*.kwl")
	// examples/nft holds what only nft can do (secret knocks).
	own, _ := filepath.Glob("../../examples/nft/*.kwl")
	var scs []Scenario
	for _, f := range append(files, own...) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pol, diags := lang.Load(f, src)
		if diags.HasErrors() {
			t.Errorf("%s: %v", f, diags)
			continue
		}
		for _, test := range pol.Tests {
			name := filepath.Base(f) + ":" + test.Name
			sc := Scenario{Name: strings.TrimSuffix(filepath.Base(f), ".kwl") + "/" + test.Name, Policy: string(src), Clock: test.Start}
			if slices.Contains(own, f) {
				sc.Backends = []string{"nft"}
			}
			why := ""
			for _, st := range test.Steps {
				if st.Dst.IsValid() {
					why = "sends to another host (to " + st.Dst.String() + ")"
				}
				pk := Packet{At: st.At, Src: st.Src, SPort: st.SPort, Port: st.Port, Kind: st.Kind,
					Flags: st.Flags, HasFlags: st.HasFlags}
				if st.Token != lang.NoToken {
					tok := sim.StepToken(secret.StandIn(st.Secret.Path), test.Start, st)
					pk.Payload = tok[:]
				}
				sc.Packets = append(sc.Packets, pk)
			}
			if n := len(test.Steps); why == "" && n > 0 && test.Steps[n-1].At > maxExampleSpan {
				why = fmt.Sprintf("lasts %v", test.Steps[n-1].At)
			}
			if why == "" {
				sc.Packets = Resolve(sc.Packets)
				tgs, err := targetsFor(&sc, pol)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				for _, tg := range tgs {
					if ok, w, err := Robust(tg.Model, sc.Packets, Margin); err != nil {
						t.Errorf("%s: %v", name, err)
					} else if !ok {
						why = tg.Backend + ": " + w
						break
					}
				}
			}
			if why != "" {
				ta.skip(name + ": " + why)
				continue
			}
			scs = append(scs, sc)
		}
	}
	return scs
}

// maxExampleSpan bounds the real time an example test may take. Scenarios
// run in parallel, so one long test costs its own length, not more.
const maxExampleSpan = 75 * time.Second

// TestCatalogRobust checks, without the kernel, that every packet of the
// catalog keeps Margin from the timing boundaries of both backends' models.
func TestCatalogRobust(t *testing.T) {
	for _, sc := range Catalog() {
		if sc.Boundary {
			continue
		}
		checkRobust(t, &sc)
	}
}

// checkRobust resolves a scenario's packets, checks that they keep
// Margin from the timing boundaries of each of its backends' models, and
// returns its targets.
func checkRobust(t *testing.T, sc *Scenario) []Target {
	t.Helper()
	sc.Packets = Resolve(sc.Packets)
	tgs, err := targets(sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tgs {
		if ok, why, err := Robust(tg.Model, sc.Packets, Margin); err != nil || !ok {
			t.Errorf("%s/%s: not robust: %v %s", sc.Name, tg.Backend, err, why)
		}
	}
	return tgs
}
