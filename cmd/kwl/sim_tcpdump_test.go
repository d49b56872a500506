//go:build linux

package main

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"kwl.dev/kwl/internal/netns"
)

// TestSimLiveTcpdump: tcpdump -U -w - | kwl sim POLICY -, in a namespace
// of its own, on its loopback: a packet's line comes out while tcpdump
// still runs, and an interrupt of the pipeline (Ctrl-C: SIGINT to the
// process group) ends kwl sim with its summary.
func TestSimLiveTcpdump(t *testing.T) {
	netns.NeedRoot(t, "tcpdump", "bash")
	ns := netns.ForTest(t, "kwlc-live")
	kwl, policy := kwlAndPolicy(t, "knock 1600 opens ssh for 60s\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, "sh", "-c",
		"tcpdump -i lo -U -w - 'tcp dst port 22 and tcp[tcpflags] & tcp-syn != 0' 2>/dev/null | "+kwl+" sim "+policy+" -")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	lines, stderr := startLines(t, cmd)
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	// Knock until tcpdump, which starts in its own time, has seen one:
	// each attempt is a SYN to 127.0.0.1:22 that the loopback refuses.
	var first string
	deadline := time.After(20 * time.Second)
wait:
	for {
		ns.Run("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22")
		select {
		case first = <-lines:
			break wait
		case <-deadline:
			t.Fatalf("no line from kwl sim while tcpdump runs; stderr: %s", stderr.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !strings.Contains(first, "tcp 127.0.0.1:") || !strings.Contains(first, "> 127.0.0.1:22 [S]: drop by "+policy+":1:1") {
		t.Errorf("first line %q, want a SYN to ssh dropped by the knock's guard", first)
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	cmd.Wait()
	if out := strings.Join(rest, "\n"); !strings.Contains(out, "by statement:") || !strings.Contains(out, "packets ") {
		t.Errorf("no summary after SIGINT:\n%s\nstderr: %s", out, stderr.String())
	}
}
