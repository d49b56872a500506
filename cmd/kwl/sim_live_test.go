//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSimLive feeds kwl sim a capture through a pipe that stays open, as
// tcpdump -w - does: each packet's line must come out before the next
// packet is written, and a SIGINT must end the replay with its summary
// and exit status 0.
func TestSimLive(t *testing.T) {
	kwl, policy := kwlAndPolicy(t, "knock 1600 opens ssh for 60s\n")
	pcap, err := textToPcap("0s 198.51.100.10:40000 > 192.0.2.1:22 tcp S\n" +
		"1s 198.51.100.10:40001 > 192.0.2.1:1600 tcp S\n" +
		"2s 198.51.100.10:40002 > 192.0.2.1:22 tcp S\n")
	if err != nil {
		t.Fatal(err)
	}
	const header, record = 24, 16 + 14 + 40 // pcap header; record header, Ethernet, IPv4 + TCP
	if len(pcap) != header+3*record {
		t.Fatalf("capture of %d bytes, want %d", len(pcap), header+3*record)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kwl, "sim", policy, "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines, stderr := startLines(t, cmd)
	defer cmd.Process.Kill()
	next := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended, want a line with %q; stderr: %s", want, stderr.String())
			}
			if !strings.Contains(l, want) {
				t.Fatalf("line %q, want %q", l, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no line with %q while the pipe is open", want)
		}
	}
	stdin.Write(pcap[:header+record])
	next("1 0s tcp 198.51.100.10:40000 > 192.0.2.1:22 [S]: drop")
	stdin.Write(pcap[header+record : header+2*record])
	next("2 1s tcp 198.51.100.10:40001 > 192.0.2.1:1600 [S]: drop")
	stdin.Write(pcap[header+2*record:])
	next("3 2s tcp 198.51.100.10:40002 > 192.0.2.1:22 [S]: accept")
	// The pipe stays open: only the signal ends the replay.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kwl sim: %v; stderr: %s", err, stderr.String())
	}
	if out := strings.Join(rest, "\n"); !strings.Contains(out, "packets 3") {
		t.Errorf("no summary of 3 packets after SIGINT:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say the replay was interrupted: %s", stderr.String())
	}
}

// kwlAndPolicy returns the path of a kwl command (the test binary, which
// TestMain runs as kwl under that name) and of a policy file of src.
func kwlAndPolicy(t *testing.T, src string) (kwl, policy string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kwl = filepath.Join(dir, "kwl")
	if err := os.Symlink(exe, kwl); err != nil {
		t.Fatal(err)
	}
	policy = filepath.Join(dir, "p.kwl")
	if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return kwl, policy
}

// startLines starts cmd and returns the lines of its standard output as
// they come (the channel closes at its end) and its standard error.
func startLines(t *testing.T, cmd *exec.Cmd) (<-chan string, *bytes.Buffer) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines, stderr
}
