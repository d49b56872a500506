package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"kwl.dev/kwl/internal/gen"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
	"kwl.dev/kwl/sim/report"
)

// mkpcap is the testscript command "mkpcap IN OUT": it writes the pcap
// OUT from the text IN, one packet a line:
//
//	TIME SRC:PORT > DST:PORT tcp|udp [FLAGS]
//
// with TIME a duration ("1.5s"), FLAGS tcpdump's letters (S, S., ., F, R,
// P). Addresses may be IPv6 in brackets. Blank lines and # comments are
// ignored.
func mkpcap(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkpcap IN OUT")
	}
	out, err := textToPcap(ts.ReadFile(args[0]))
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), out, 0o644))
}

// kwlgenCmd is the testscript command "kwlgen N OUT": a generated trace
// of N packets over a minute.
func kwlgenCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: kwlgen N OUT")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	f, err := os.Create(ts.MkAbs(args[1]))
	ts.Check(err)
	o := gen.Defaults
	o.Packets, o.Sources, o.Span = n, 50, time.Minute
	ts.Check(gen.Write(f, o))
	ts.Check(f.Close())
}

func textToPcap(text string) ([]byte, error) {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b23c4d) // nanoseconds
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 1)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", i+1, why, line) }
		// A last word "frag" sends an IPv4 packet as two fragments, the
		// first with 8 bytes of its transport header, 1 ms apart;
		// "firstfrag" sends only the first of them.
		frag := ""
		if n := len(f); n > 5 && (f[n-1] == "frag" || f[n-1] == "firstfrag") {
			frag, f = f[n-1], f[:n-1]
		}
		if len(f) < 5 || f[2] != ">" {
			return nil, bad("want TIME SRC:PORT > DST:PORT tcp|udp [FLAGS] [frag|firstfrag]")
		}
		d, err := time.ParseDuration(f[0])
		if err != nil {
			return nil, bad(err.Error())
		}
		src, err1 := netip.ParseAddrPort(f[1])
		dst, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil || src.Addr().Is4() != dst.Addr().Is4() {
			return nil, bad("addresses")
		}
		var l4 []byte
		var proto byte
		switch f[4] {
		case "tcp":
			proto = 6
			l4 = make([]byte, 20)
			l4[12] = 5 << 4
			flags := "S"
			if len(f) > 5 {
				flags = f[5]
			}
			for _, c := range flags {
				l4[13] |= map[rune]byte{'F': 1, 'S': 2, 'R': 4, 'P': 8, '.': 16}[c]
			}
		case "udp":
			proto = 17
			l4 = make([]byte, 8)
			binary.BigEndian.PutUint16(l4[4:], 8)
		default:
			return nil, bad("protocol")
		}
		binary.BigEndian.PutUint16(l4[0:], src.Port())
		binary.BigEndian.PutUint16(l4[2:], dst.Port())
		var frame []byte
		var frames [][]byte
		if src.Addr().Is4() {
			v4 := func(payload []byte, off int, more bool) []byte {
				ip := make([]byte, 20)
				ip[0], ip[8], ip[9] = 0x45, 64, proto
				binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
				binary.BigEndian.PutUint16(ip[4:], uint16(i+1)) // id
				fo := uint16(off / 8)
				if more {
					fo |= 0x2000
				}
				binary.BigEndian.PutUint16(ip[6:], fo)
				s, d := src.Addr().As4(), dst.Addr().As4()
				copy(ip[12:], s[:])
				copy(ip[16:], d[:])
				return append(append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0}, ip...), payload...)
			}
			switch frag {
			case "frag":
				frames = [][]byte{v4(l4[:8], 0, true), v4(l4[8:], 8, false)}
			case "firstfrag":
				frames = [][]byte{v4(l4[:8], 0, true)}
			default:
				frame = v4(l4, 0, false)
			}
		} else if frag != "" {
			return nil, bad("fragments are IPv4 only")
		} else {
			ip := make([]byte, 40)
			ip[0], ip[6], ip[7] = 0x60, proto, 64
			binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
			s, d := src.Addr().As16(), dst.Addr().As16()
			copy(ip[8:], s[:])
			copy(ip[24:], d[:])
			frame = append(append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd}, ip...), l4...)
		}
		if frames == nil {
			frames = [][]byte{frame}
		}
		for k, fr := range frames {
			t := base.Add(d + time.Duration(k)*time.Millisecond)
			b = le.AppendUint32(b, uint32(t.Unix()))
			b = le.AppendUint32(b, uint32(t.Nanosecond()))
			b = le.AppendUint32(b, uint32(len(fr)))
			b = le.AppendUint32(b, uint32(len(fr)))
			b = append(b, fr...)
		}
	}
	return b, nil
}

// knockEngine is a stand-in simulator for the replay logic: tcp/1600
// opens tcp/22 for the source, forever; everything else is accepted.
type knockEngine struct{ open map[netip.Addr]bool }

// stubPolicy is the policy the stand-in engines decide by: statements
// on the lines of file, one to a line, that guard nothing.
func stubPolicy(file string, lines ...int) *lang.Policy {
	p := &lang.Policy{File: file}
	for i, l := range lines {
		p.Services = append(p.Services, &lang.Service{Ref: lang.Ref{ID: i + 1, Pos: lang.Pos{File: file, Line: l, Col: 1}}, Name: fmt.Sprint("s", i+1)})
	}
	return p
}

func (e *knockEngine) Eval(p *capture.Packet) replay.Result {
	switch {
	case p.Proto == lang.TCP && p.DPort == 1600:
		e.open[p.Src] = true
		return replay.Result{Verdict: lang.Drop, Stmt: 1}
	case p.Proto == lang.TCP && p.DPort == 22 && p.Flags&(capture.SYN|capture.ACK) == capture.SYN:
		if e.open[p.Src] {
			return replay.Result{Verdict: lang.Accept, Stmt: 1}
		}
		return replay.Result{Verdict: lang.Drop, Stmt: 2}
	}
	return replay.Result{Verdict: lang.Accept}
}

func TestReplayBlockedFlows(t *testing.T) {
	trace, err := textToPcap(`
0s    198.51.100.1:40000 > 192.0.2.1:22 tcp S    # dropped: no knock
0.1s  192.0.2.1:22 > 198.51.100.1:40000 tcp S.   # the capture saw an answer: blocked flow
0.2s  198.51.100.1:40000 > 192.0.2.1:22 tcp .    # and the ACK: blocked flow
1s    198.51.100.1:40001 > 192.0.2.1:1600 tcp S  # knock
1.5s  198.51.100.1:40000 > 192.0.2.1:22 tcp S    # retransmitted SYN: evaluated again, accepted
1.6s  192.0.2.1:22 > 198.51.100.1:40000 tcp S.   # now a reply of an accepted flow
0.5s  198.51.100.1:40000 > 192.0.2.1:22 tcp .    # time goes back: replayed at 1.6s
`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := capture.Open(bytes.NewReader(trace))
	if err != nil {
		t.Fatal(err)
	}
	pol := stubPolicy("p.kwl", 1, 2)
	rp := replay.New(pol, &knockEngine{open: map[netip.Addr]bool{}})
	var out []byte
	var p capture.Packet
	for r.Next(&p) == nil {
		o := rp.Step(&p)
		out = report.AppendPacketJSON(out, &p, &o, rp)
	}
	want := []string{
		`{"n":1,"time":0,"src":"198.51.100.1","dst":"192.0.2.1","proto":"tcp","sport":40000,"dport":22,"flags":"S","verdict":"drop","rule":"p.kwl:2:1"}`,
		`{"n":2,"time":0.1,"src":"192.0.2.1","dst":"198.51.100.1","proto":"tcp","sport":22,"dport":40000,"flags":"S.","verdict":"drop","rule":"p.kwl:2:1","blocked_flow":1}`,
		`{"n":3,"time":0.2,"src":"198.51.100.1","dst":"192.0.2.1","proto":"tcp","sport":40000,"dport":22,"flags":".","verdict":"drop","rule":"p.kwl:2:1","blocked_flow":1}`,
		`{"n":4,"time":1,"src":"198.51.100.1","dst":"192.0.2.1","proto":"tcp","sport":40001,"dport":1600,"flags":"S","verdict":"drop","rule":"p.kwl:1:1"}`,
		`{"n":5,"time":1.5,"src":"198.51.100.1","dst":"192.0.2.1","proto":"tcp","sport":40000,"dport":22,"flags":"S","verdict":"accept","rule":"p.kwl:1:1"}`,
		`{"n":6,"time":1.6,"src":"192.0.2.1","dst":"198.51.100.1","proto":"tcp","sport":22,"dport":40000,"flags":"S.","verdict":"accept","rule":""}`,
		`{"n":7,"time":1.6,"src":"198.51.100.1","dst":"192.0.2.1","proto":"tcp","sport":40000,"dport":22,"flags":".","verdict":"accept","rule":""}`,
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range got {
		if !json.Valid([]byte(l)) {
			t.Errorf("not JSON: %s", l)
		}
	}
	sum := report.AppendSummaryJSON(nil, &report.Run{Replay: rp, Reader: r})
	var s map[string]any
	if err := json.Unmarshal(sum, &s); err != nil {
		t.Fatalf("summary %s: %v", sum, err)
	}
	if s["packets"] != 7.0 || s["evaluated"] != 5.0 || s["blocked_flow_packets"] != 2.0 || s["dropped"] != 4.0 {
		t.Errorf("summary %s", sum)
	}
}

func TestPacketJSONAllocs(t *testing.T) {
	rp := replay.New(stubPolicy("p.kwl", 1, 2), &knockEngine{open: map[netip.Addr]bool{}})
	p := capture.Packet{N: 1, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Proto: lang.TCP, SPort: 1, DPort: 22, Flags: capture.SYN}
	o := replay.Outcome{Evaluated: true, Verdict: lang.Drop, Stmt: 2}
	buf := report.AppendPacketJSON(nil, &p, &o, rp)
	if n := testing.AllocsPerRun(100, func() { buf = report.AppendPacketJSON(buf[:0], &p, &o, rp) }); n != 0 {
		t.Errorf("%v allocations per JSON line", n)
	}
	// A rule whose text is longer than the compiler's stack buffer for
	// conversions (32 bytes).
	rp = replay.New(stubPolicy("/a/long/directory/name/for/the/policy.kwl", 12), &knockEngine{open: map[netip.Addr]bool{}})
	o = replay.Outcome{Evaluated: true, Verdict: lang.Drop, Stmt: 1}
	if n := testing.AllocsPerRun(100, func() { buf = report.AppendPacketJSON(buf[:0], &p, &o, rp) }); n != 0 {
		t.Errorf("%v allocations per JSON line with a long rule", n)
	}
}

// TestSplitReplayChangesNothing replays a generated capture through each
// example, with the packets divided between two lanes and in one: the
// JSON Lines and the summary must be the same, byte for byte.
func TestSplitReplayChangesNothing(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.pcap")
	f, err := os.Create(trace)
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.Write(f, gen.Options{Packets: 60000, Sources: 300, Span: 20 * time.Minute, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	files, _ := filepath.Glob("../../examples/*.kwl")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	defer func() { noSplit = false }()
	for _, pol := range files {
		for _, backend := range []string{"nft", "iptables"} {
			for _, args := range [][]string{{"--format", "json"}, {"--host", "192.0.2.1"}} {
				var outs [2]string
				for k, off := range []bool{false, true} {
					noSplit = off
					var stdout, stderr bytes.Buffer
					a := append([]string{"sim", "--backend", backend, "--progress=false"}, args...)
					if code := run(&cmdEnv{stdout: &stdout, stderr: &stderr}, append(a, pol, trace)); code != 0 {
						t.Fatalf("%s %s: exit %d: %s", pol, backend, code, stderr.String())
					}
					outs[k] = stdout.String()
				}
				if outs[0] != outs[1] {
					t.Errorf("%s %s %v: the output with two lanes differs from the output with one", filepath.Base(pol), backend, args)
				}
			}
		}
	}
}
