// Command kwlgen writes a synthetic packet capture for kwl sim's
// benchmarks: TCP SYNs from many sources, some UDP and IPv6, knocks on
// tcp/1600 followed by ssh connections, spread over a span of time.
//
//	go run ./cmd/kwlgen -n 10000000 -o /tmp/trace.pcap
package main

import (
	"flag"
	"fmt"
	"os"

	"kwl.dev/kwl/internal/gen"
)

func main() {
	o := gen.Defaults
	flag.IntVar(&o.Packets, "n", o.Packets, "packets to write")
	flag.IntVar(&o.Sources, "sources", o.Sources, "distinct sources per family")
	flag.DurationVar(&o.Span, "span", o.Span, "time from the first packet to the last")
	flag.Uint64Var(&o.Seed, "seed", o.Seed, "random seed: the same seed gives the same file")
	out := flag.String("o", "", "output file (- for standard output)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: kwlgen [-n N] [-sources N] [-span DUR] [-seed N] -o FILE")
		os.Exit(2)
	}
	w := os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kwlgen:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := gen.Write(w, o); err != nil {
		fmt.Fprintln(os.Stderr, "kwlgen:", err)
		os.Exit(1)
	}
	if err := w.Close(); err != nil && *out != "-" {
		fmt.Fprintln(os.Stderr, "kwlgen:", err)
		os.Exit(1)
	}
}
