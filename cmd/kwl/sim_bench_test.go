package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

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
	if newEngine == nil {
		b.Skip("this build has no simulator")
	}
	trace := os.Getenv("KWL_BENCH_TRACE")
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
	dir := b.TempDir()
	pol := filepath.Join(dir, "p.kwl")
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, diags := lang.Load(pol, []byte(benchPolicy)); diags.HasErrors() {
		b.Fatal(diags)
	}
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

func countPackets(b *testing.B, trace string) int {
	f, err := os.Open(trace)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, err := capture.Open(f)
	if err != nil {
		b.Fatal(err)
	}
	var p capture.Packet
	n := 0
	for r.Next(&p) == nil {
		n++
	}
	return n
}
