//go:build linux

package kerneltest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// tcpdumpPolicy is the seed (examples/sshknock.kwl) with windows short
// enough for a test.
const tcpdumpPolicy = `# the seed, with short windows
service ssh = tcp/22
knock 1600 opens ssh for 3s log info
close ssh on 1599, 1601
limit ssh 3/3s per source log info
`

// tcpdumpSteps are real knocks, connections, established traffic and
// limit excess, IPv4 and IPv6. Data packets only follow connections that
// were admitted: a blocked flow's later packets are another question
// (TestDifferential asks it).
const tcpdumpSteps = `
	0s     198.51.100.10 22                    # closed: drop
	200ms  198.51.100.10 1600                  # knock: open until 3.2s
	400ms  198.51.100.10:41001 22              # 1st of the limit
	600ms  198.51.100.10:41001 22 data         # established
	800ms  198.51.100.10 22                    # 2nd
	1s     198.51.100.10 22                    # 3rd
	1.2s   198.51.100.10 22                    # over the limit: drop
	1.4s   198.51.100.20 22                    # another host: drop
	1.6s   [2001:db8:1::10]:41100 1600         # knock over IPv6
	1.8s   [2001:db8:1::10]:41101 22           # open
	2s     [2001:db8:1::10]:41101 22 data
	2.2s   [2001:db8:1::10]:41102 1599         # close revokes the door
	2.4s   [2001:db8:1::10]:41103 22           # drop
	2.6s   [2001:db8:1::10]:41101 22 data      # the connection outlives its door
	2.8s   198.51.100.30 1600
	2.95s  198.51.100.30:41301 22              # open
	3.1s   198.51.100.30 1601                  # scan defence: revokes
	3.25s  198.51.100.30 22                    # drop
	3.4s   198.51.100.30:41301 22 data         # established survives
	3.5s   198.51.100.10 22                    # the door of 200ms has expired
	3.65s  198.51.100.10:41001 22 data         # its connection has not
	3.8s   198.51.100.40 tcp/80                # no statement: chain policy accept
`

// TestTcpdumpReplay captures a scenario with tcpdump on the firewall's
// side of the veth, in the firewall's namespace, while real knocks and
// connections cross the kwl ruleset, then replays the capture file as
// `kwl sim --host FW4 --host FW6` does (sim/capture and sim/replay, two
// lanes when the ruleset allows) and compares its verdict on every packet
// the client sent with the kernel's, per backend. The capture's packet n is tied to the scenario by the tag in
// its IPv4 id / IPv6 flow label, read from the pcap itself.
func TestTcpdumpReplay(t *testing.T) {
	needRoot(t)
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		if os.Getenv("KWL_KERNEL_TESTS") == "1" {
			t.Fatalf("KWL_KERNEL_TESTS=1 but tcpdump is not installed: %v", err)
		}
		t.Skipf("tcpdump not installed: %v", err)
	}
	dir := t.TempDir()
	pol, diags := lang.Load("seed.kwl", []byte(tcpdumpPolicy))
	if diags.HasErrors() {
		t.Fatalf("%v", diags)
	}
	pkts := Resolve(Steps(tcpdumpSteps))
	sc := Scenario{Name: "tcpdump", Policy: tcpdumpPolicy}
	tgs, err := targetsFor(&sc, pol)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tgs {
		t.Run(tg.Backend, func(t *testing.T) {
			t.Parallel()
			if tg.Model != nil {
				if ok, why, err := Robust(tg.Model, pkts, Margin); err != nil || !ok {
					t.Fatalf("scenario too close to a timing boundary: %v %s", err, why)
				}
			}
			var out []Outcome
			var pcapPath string
			for run := 1; ; run++ {
				pcapPath = filepath.Join(dir, fmt.Sprintf("%s-%d.pcap", tg.Backend, run))
				out = tcpdumpRun(t, tg, tcpdump, pcapPath, pkts)
				if tg.Model == nil {
					break
				}
				ok, why, err := Robust(tg.Model, sentPackets(out), SentMargin)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					break
				}
				if run == maxRuns {
					t.Fatalf("in %d runs the packets never left far enough from a timing boundary (%s): machine too busy", run, why)
				}
				t.Logf("run %d sent too near a boundary (%s): repeated", run, why)
			}
			for _, s := range selfCheck(out) {
				t.Errorf("harness self-check: %s", s)
			}
			if tg.Model != nil {
				ds, err := Compare(tg.Model, out)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range ds {
					t.Errorf("kernel and simulator disagree on %s", d)
				}
			}
			compareKwlSim(t, tg, pcapPath, out)
		})
	}
}

// tcpdumpRun sends the packets through the target's ruleset in a fresh lab
// while tcpdump writes the firewall's side of the veth to pcapPath.
func tcpdumpRun(t *testing.T, tg Target, tcpdump, pcapPath string, pkts []Packet) []Outcome {
	t.Helper()
	l, err := NewLab()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{l.FW.Name, l.Client.Name}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
		checkGone(t, names...)
	})
	if err := tg.Load(l); err != nil {
		t.Fatalf("%s: load: %v", tg.Backend, err)
	}
	td, err := startTcpdump(l, tcpdump, pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the lab's Close, so it runs before it.
	t.Cleanup(func() { td.kill() })
	out, err := l.Replay(pkts)
	if err != nil {
		t.Fatal(err)
	}
	// tcpdump may be scheduled later than the harness: SIGINT ends its
	// loop and drops what it has not read yet, so it is sent once the
	// file (written packet by packet, -U) holds every packet the client
	// sent, or after settleWait.
	settle(func() bool { return capturedAll(pcapPath, out) })
	stats, err := td.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tcpdump: %s", stats)
	if m := regexp.MustCompile(`(\d+) packets? dropped by kernel`).FindStringSubmatch(stats); m != nil && m[1] != "0" {
		t.Errorf("tcpdump lost packets: %s", stats)
	}
	return out
}

// capturedAll reports whether the pcap file holds every packet of out.
func capturedAll(path string, out []Outcome) bool {
	want := map[tagKey]bool{}
	for i := range out {
		want[out[i].key()] = true
	}
	frames, _, _ := readPcapFrames(path)
	for _, f := range frames {
		if q, ok := parseFrame(f); ok && q.src != FW4 && q.src != FW6 {
			delete(want, q.key())
		}
	}
	return len(want) == 0
}

// tcpdumpProc is a tcpdump running in the firewall's namespace.
type tcpdumpProc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has been waited for
	err    error         // of Wait
	mu     sync.Mutex
	stderr bytes.Buffer
}

// startTcpdump starts tcpdump on the firewall's end of the veth and
// returns once it says it is listening. `ip netns exec` execs tcpdump in
// place (no fork outside batch mode), so the PID is tcpdump's own.
func startTcpdump(l *Lab, tcpdump, pcapPath string) (*tcpdumpProc, error) {
	// -U: each packet written as it arrives; --immediate-mode: delivered
	// as it arrives, not when a TPACKET_V3 block fills; -Z root: Debian's
	// tcpdump otherwise drops to user tcpdump before opening the file,
	// which then cannot be created in a root-only directory.
	cmd := exec.Command("ip", "netns", "exec", l.FW.Name, tcpdump,
		"-i", fwIf, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", pcapPath)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	td := &tcpdumpProc{cmd: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(errPipe)
		said := false
		for sc.Scan() {
			td.mu.Lock()
			td.stderr.Write(sc.Bytes())
			td.stderr.WriteByte('\n')
			td.mu.Unlock()
			if !said && strings.Contains(sc.Text(), "listening on") {
				said = true
				close(listening)
			}
		}
		io.Copy(io.Discard, errPipe)
	}()
	go func() {
		// Wait only once the pipe is drained: Wait closes it.
		<-readDone
		td.err = cmd.Wait()
		close(td.done)
	}()
	select {
	case <-listening:
		return td, nil
	case <-td.done:
		return nil, fmt.Errorf("tcpdump exited before listening: %v: %s", td.err, td.output())
	case <-time.After(10 * time.Second):
		td.kill()
		return nil, fmt.Errorf("tcpdump did not say it was listening within 10s: %s", td.output())
	}
}

func (td *tcpdumpProc) output() string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return strings.TrimSpace(td.stderr.String())
}

// stop interrupts tcpdump, which then flushes the file and prints its
// counts, and waits for it.
func (td *tcpdumpProc) stop() (string, error) {
	if err := td.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return "", fmt.Errorf("interrupting tcpdump (pid %d): %w", td.cmd.Process.Pid, err)
	}
	select {
	case <-td.done:
	case <-time.After(5 * time.Second):
		td.kill()
		return "", fmt.Errorf("tcpdump (pid %d) did not stop on SIGINT within 5s: %s", td.cmd.Process.Pid, td.output())
	}
	if td.err != nil {
		return "", fmt.Errorf("tcpdump: %v: %s", td.err, td.output())
	}
	return strings.Join(strings.Fields(td.output()), " "), nil
}

// kill ends tcpdump by its PID if it still runs, and waits for it.
func (td *tcpdumpProc) kill() {
	select {
	case <-td.done:
		return
	default:
	}
	td.cmd.Process.Kill()
	select {
	case <-td.done:
	case <-time.After(5 * time.Second):
	}
}

// compareKwlSim replays the capture as kwl sim does and compares its
// verdict on every packet of the scenario with the kernel's.
func compareKwlSim(t *testing.T, tg Target, pcapPath string, out []Outcome) {
	t.Helper()
	frames, stamps, err := readPcapFrames(pcapPath)
	if err != nil {
		t.Fatalf("reading tcpdump's capture: %v", err)
	}
	sm, ok := tg.Model.(*simModel)
	if !ok {
		t.Fatalf("%s: no simulator", tg.Backend)
	}
	rp, err := sm.replay(false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sm.engine(false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := capture.Open(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("kwl sim: %v", err)
	}
	byTag := map[tagKey]int{}
	for i := range out {
		byTag[out[i].key()] = i
	}
	matched := make([]int, len(out)) // capture packet n per outcome
	var lines, compared, disagree, host int
	var others []string
	var kernel [3]int
	var maxSkew time.Duration
	var base time.Time
	err = rp.Run(rd, second, func(p *capture.Packet, ro *replay.Outcome) {
		lines++
		if p.N < 1 || p.N > len(frames) {
			t.Errorf("kwl sim: packet n=%d, the capture has %d", p.N, len(frames))
			return
		}
		q, ok := parseFrame(frames[p.N-1])
		if !ok {
			others = append(others, fmt.Sprintf("%d: not IP", p.N))
			return
		}
		if q.src == FW4 || q.src == FW6 {
			host++
			if ro.Skipped == "" {
				t.Errorf("kwl sim evaluated packet %d sent by the firewall (%s %s:%d > %s:%d): %s", p.N, q.proto, q.src, q.sport, q.dst, q.dport, ro.Verdict)
			}
			return
		}
		i, ok := byTag[q.key()]
		if !ok || q.tag == 0 || out[i].Src != q.src || out[i].SPort != q.sport || out[i].Port.Num != q.dport {
			others = append(others, fmt.Sprintf("%d: %s %s > %s", p.N, q.proto, q.src, q.dst))
			return
		}
		o := out[i]
		if matched[i] != 0 {
			t.Errorf("scenario packet %d is packets %d and %d of the capture", i+1, matched[i], p.N)
			return
		}
		matched[i] = p.N
		if p.Src != q.src || p.Dst != q.dst || p.SPort != q.sport || p.DPort != q.dport {
			t.Errorf("kwl sim packet %d is %s:%d > %s:%d, the capture says %s:%d > %s:%d", p.N, p.Src, p.SPort, p.Dst, p.DPort, q.src, q.sport, q.dst, q.dport)
		}
		// The two clocks side by side, from the first packet compared on.
		if compared == 0 {
			base = stamps[p.N-1].Add(-o.Sent)
		} else if d := stamps[p.N-1].Sub(base) - o.Sent; d.Abs() > maxSkew {
			maxSkew = d.Abs()
		}
		compared++
		k := kernelVerdict(o)
		kernel[k]++
		switch {
		case ro.Skipped != "":
			disagree++
			t.Errorf("scenario packet %d (%s), capture packet %d: kernel %s, kwl sim skipped it: %s", i+1, describe(o.Packet, o.Sent), p.N, k, ro.Skipped)
		case ro.Verdict != k:
			disagree++
			t.Errorf("scenario packet %d (%s), capture packet %d: kernel %s, kwl sim %s (rule %s, blocked flow of %d)", i+1, describe(o.Packet, o.Sent), p.N, k, ro.Verdict, ruleString(rp.Statement(ro)), ro.Blocked)
		}
	})
	if err != io.EOF {
		t.Fatalf("kwl sim: %v", err)
	}
	if lines != len(frames) || rp.Packets != len(frames) {
		t.Errorf("kwl sim replayed %d packets (counted %d), the capture has %d", lines, rp.Packets, len(frames))
	}
	for i, n := range matched {
		if n == 0 {
			t.Errorf("scenario packet %d (%s) is not in tcpdump's capture", i+1, describe(out[i].Packet, out[i].Sent))
		}
	}
	t.Logf("%s: tcpdump captured %d packets: %d sent by the client compared with the kernel (%d accepted, %d dropped), %d disagreements; %d sent by the firewall (skipped by kwl sim); %d others %v; tcpdump and harness timestamps within %v",
		tg.Backend, len(frames), compared, kernel[lang.Accept], kernel[lang.Drop], disagree, host, len(others), others, maxSkew)
}

// readPcapFrames returns the frames and timestamps of a pcap file, which
// must hold Ethernet frames (what tcpdump writes for a veth).
func readPcapFrames(path string) ([][]byte, []time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, nil, err
	}
	if lt := r.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, nil, fmt.Errorf("link type %s, not Ethernet", lt)
	}
	var frames [][]byte
	var stamps []time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return frames, stamps, fmt.Errorf("packet %d: %w", len(frames)+1, err)
		}
		frames = append(frames, data)
		stamps = append(stamps, ci.Timestamp)
	}
	if len(frames) == 0 {
		return nil, nil, fmt.Errorf("no packets")
	}
	return frames, stamps, nil
}
