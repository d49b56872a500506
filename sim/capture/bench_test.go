package capture

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"kwl.dev/kwl/internal/baseline"
	"kwl.dev/kwl/internal/gen"
)

// benchTrace returns a generated capture for the benchmarks: the file
// named by $KWL_BENCH_TRACE (go run ./cmd/kwlgen -n 10000000 -o FILE),
// or one of a million packets made once in the temporary directory.
func benchTrace(b *testing.B) string {
	if f := os.Getenv("KWL_BENCH_TRACE"); f != "" {
		return f
	}
	path := filepath.Join(os.TempDir(), "kwl-bench-1000000.pcap")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	f, err := os.CreateTemp(os.TempDir(), "kwl-bench-*.pcap")
	if err != nil {
		b.Fatal(err)
	}
	o := gen.Defaults
	o.Packets = 1_000_000
	if err := gen.Write(f, o); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		b.Fatal(err)
	}
	return path
}

// replay runs pass over the trace b.N times and reports packets/s.
func replay(b *testing.B, pass func(r io.Reader) int) {
	path := benchTrace(b)
	b.ReportAllocs()
	b.ResetTimer()
	packets := 0
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		packets += pass(f)
		f.Close()
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/packet")
}

// BenchmarkBaselinePcapgo is the floor kwl sim is measured against: a
// bare loop that reads the file with pcapgo and updates one map entry per
// source, taking the address at a fixed offset of an Ethernet frame
// (baseline.Count).
func BenchmarkBaselinePcapgo(b *testing.B) {
	replay(b, func(in io.Reader) int {
		n, err := baseline.Count(in)
		if err != nil {
			b.Fatal(err)
		}
		return n
	})
}

// BenchmarkReader is capture.Reader: pcapgo plus the hand-written
// decoder, with the same map update keyed by the decoded source.
func BenchmarkReader(b *testing.B) {
	replay(b, func(in io.Reader) int {
		r, err := Open(in)
		if err != nil {
			b.Fatal(err)
		}
		seen := make(map[netip.Addr]int)
		var p Packet
		n := 0
		for r.Next(&p) == nil {
			n++
			seen[p.Src]++
		}
		return n
	})
}

// BenchmarkReaderKey16 is BenchmarkReader with the baseline's map, keyed
// by the 16-byte form of the source: the reader's cost against the
// baseline's, without the difference between the two maps (a netip.Addr
// key, which holds a pointer, hashes and compares more slowly).
func BenchmarkReaderKey16(b *testing.B) {
	replay(b, func(in io.Reader) int {
		r, err := Open(in)
		if err != nil {
			b.Fatal(err)
		}
		seen := make(map[[16]byte]int)
		var p Packet
		n := 0
		for r.Next(&p) == nil {
			n++
			seen[p.Src.As16()]++
		}
		return n
	})
}

// BenchmarkGopacketNewPacket decodes with gopacket.NewPacket (lazy, no
// copy) instead of the hand-written decoder: the road not taken.
func BenchmarkGopacketNewPacket(b *testing.B) {
	replay(b, func(in io.Reader) int {
		r, err := pcapgo.NewReader(bufio.NewReaderSize(in, bufSize))
		if err != nil {
			b.Fatal(err)
		}
		seen := make(map[netip.Addr]int)
		n := 0
		for {
			data, _, err := r.ZeroCopyReadPacketData()
			if err != nil {
				break
			}
			n++
			pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
			var src netip.Addr
			if nl := pkt.NetworkLayer(); nl != nil {
				src, _ = netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
			}
			if tl := pkt.TransportLayer(); tl != nil {
				_ = tl.TransportFlow().Dst()
			}
			seen[src]++
		}
		return n
	})
}

// BenchmarkDecode is the decoder alone on one Ethernet IPv4 SYN.
func BenchmarkDecode(b *testing.B) {
	frame := ether(0x0800, ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(40000, 22, SYN), v4opt{}))
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		Decode(LinkEthernet, frame, &p)
	}
}

func ExampleReader() {
	f, err := os.Open(filepath.Join(corpusDir, "td-tcp-handshake-nano.pcap"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	r, err := Open(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	var p Packet
	for r.Next(&p) == nil {
		fmt.Printf("%d %v %v:%d > %v:%d %v flags %#02x\n", p.N, p.Time.Round(time.Microsecond), p.Src, p.SPort, p.Dst, p.DPort, p.Proto, p.Flags)
	}
}
