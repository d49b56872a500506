package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"kwl.dev/kwl/internal/baseline"
	"kwl.dev/kwl/internal/gen"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// benchPolicy is the seed's policy: a knock on 1600 opens ssh, 1599 and
// 1601 close it, and ssh is limited per source.
const benchPolicy = `knock 1600 opens ssh for 60s
close ssh on 1599, 1601
limit ssh 3/60s per source
`

// BenchmarkSim is the whole of kwl sim with summary output on a generated
// trace ($KWL_BENCH_TRACE, or a million packets made once in the
// temporary directory), for both backends.
func BenchmarkSim(b *testing.B) {
	for _, backend := range []string{"nft", "iptables"} {
		for _, format := range []string{"text", "json"} {
			b.Run(backend+"/"+format, func(b *testing.B) { benchSim(b, backend, format) })
		}
	}
}

func benchSim(b *testing.B, backend, format string) {
	trace, pol := benchSetup(b)
	perPass := countPackets(b, trace)
	env := &cmdEnv{stdout: io.Discard, stderr: io.Discard}
	passes := 0
	b.ReportAllocs()
	for b.Loop() {
		if code := run(env, []string{"sim", "--backend", backend, "--format", format, "--progress=false", pol, trace}); code != 0 {
			b.Fatalf("exit %d", code)
		}
		passes++
	}
	b.ReportMetric(float64(passes*perPass)/b.Elapsed().Seconds(), "packets/s")
}

// benchSetup returns the trace ($KWL_BENCH_TRACE, or a million packets
// made in the temporary directory) and the policy file the benchmarks
// replay.
func benchSetup(b *testing.B) (trace, pol string) {
	trace = os.Getenv("KWL_BENCH_TRACE")
	if trace == "" {
		trace = filepath.Join(b.TempDir(), "trace.pcap")
		f, err := os.Create(trace)
		if err != nil {
			b.Fatal(err)
		}
		o := gen.Defaults
		o.Packets = 1_000_000
		if err := gen.Write(f, o); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	pol = filepath.Join(b.TempDir(), "p.kwl")
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, diags := lang.Load(pol, []byte(benchPolicy)); diags.HasErrors() {
		b.Fatal(diags)
	}
	return trace, pol
}

func countPackets(b *testing.B, trace string) int {
	n := 0
	readCapture(b, trace, func(*capture.Packet) { n++ })
	return n
}

// readCapture calls each for every packet of the pcap file.
func readCapture(t testing.TB, path string, each func(*capture.Packet)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := capture.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	var p capture.Packet
	for r.Next(&p) == nil {
		each(&p)
	}
}

// BenchmarkSimVsBaseline runs, in each iteration, the baseline loop
// (baseline.Count: pcapgo and one map entry per source), tcpdump with a
// compiled BPF filter when it is installed (the C baseline), and kwl sim
// with summary output, on the same trace, for each backend. It reports
// each one's packet rate and kwl sim's as a fraction of the baselines':
// interleaved, the three see the same state of the machine.
func BenchmarkSimVsBaseline(b *testing.B) {
	for _, backend := range []string{"nft", "iptables"} {
		b.Run(backend, func(b *testing.B) {
			trace, pol := benchSetup(b)
			env := &cmdEnv{stdout: io.Discard, stderr: io.Discard}
			tcpdump, _ := exec.LookPath("tcpdump")
			var base, dump, sim time.Duration
			perPass := 0 // the baseline counts the packets
			for b.Loop() {
				t0 := time.Now()
				f, err := os.Open(trace)
				if err != nil {
					b.Fatal(err)
				}
				if perPass, err = baseline.Count(f); err != nil {
					b.Fatal(err)
				}
				f.Close()
				t1 := time.Now()
				if tcpdump != "" {
					cmd := exec.Command(tcpdump, "-r", trace, "-w", "/dev/null", "tcp[tcpflags] & tcp-syn != 0 and dst port 22")
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("tcpdump: %v: %s", err, out)
					}
				}
				t2 := time.Now()
				if code := run(env, []string{"sim", "--backend", backend, "--progress=false", pol, trace}); code != 0 {
					b.Fatalf("exit %d", code)
				}
				base += t1.Sub(t0)
				dump += t2.Sub(t1)
				sim += time.Since(t2)
			}
			n := float64(b.N * perPass)
			b.ReportMetric(n/base.Seconds(), "baseline-packets/s")
			b.ReportMetric(n/sim.Seconds(), "sim-packets/s")
			b.ReportMetric(base.Seconds()/sim.Seconds(), "x-baseline")
			if tcpdump != "" {
				b.ReportMetric(n/dump.Seconds(), "tcpdump-packets/s")
				b.ReportMetric(dump.Seconds()/sim.Seconds(), "x-tcpdump")
			}
		})
	}
}
