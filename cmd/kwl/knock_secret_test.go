//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim/capture"
)

// TestKnockSecret deploys a secret knock in a namespace, captures its
// loopback with tcpdump as an eavesdropper would, and checks:
//   - kwl knock opens ssh, and knocks again in the same window open it
//     again (each a token of its own);
//   - the captured datagram, sent again from another address, or from
//     the same one once the door has closed, opens nothing;
//   - a stale token and a forged one open nothing;
//   - kwl sim on the capture gives every packet the kernel's verdict.
func TestKnockSecret(t *testing.T) {
	netns.NeedRoot(t, "nft", "tcpdump")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ssh.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	kwl, policy := kwlAndPolicy(t, fmt.Sprintf("knock udp/62201 secret %q opens ssh for 2s\n", keyFile))
	ns, _ := loopbackSSH(t, "kwlc-secret", policy)

	pcap := filepath.Join(dir, "cap.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dump := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, "tcpdump", "-i", "lo", "-U", "-w", pcap,
		"udp dst port 62201 or (tcp dst port 22 and tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0)")
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	defer dump.Process.Kill()

	// What the kernel did, packet by packet, in the order sent: every
	// datagram to the knock port is dropped; a SYN to ssh is accepted
	// when the connection is made.
	var kernel []lang.Verdict
	send := func(from string, payload []byte) {
		t.Helper()
		err := ns.Do(func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 62201})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(payload)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		kernel = append(kernel, lang.Drop)
		time.Sleep(50 * time.Millisecond)
	}
	ssh := func(from string) bool {
		t.Helper()
		var c net.Conn
		err := ns.Do(func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 500 * time.Millisecond}
			c, err = d.Dial("tcp4", "127.0.0.1:22")
			return
		})
		if err == nil {
			c.Close()
			kernel = append(kernel, lang.Accept)
			return true
		}
		kernel = append(kernel, lang.Drop)
		return false
	}
	// tcpdump starts in its own time: empty datagrams until it has one.
	for deadline := time.Now().Add(20 * time.Second); ; {
		send("127.0.0.9", nil)
		if fi, err := os.Stat(pcap); err == nil && fi.Size() > 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tcpdump captured nothing")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ssh("127.0.0.1") {
		t.Fatal("ssh answered before the knock")
	}
	state := t.TempDir()
	knock := func() {
		t.Helper()
		cmd := exec.Command("ip", "netns", "exec", ns.Name, kwl, "knock", "--policy", policy, "127.0.0.1", "ssh")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+state)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "sent a datagram of the token of window") {
			t.Fatalf("kwl knock: %v\n%s", err, out)
		}
		kernel = append(kernel, lang.Drop)
		time.Sleep(50 * time.Millisecond)
	}
	knock()
	if !ssh("127.0.0.1") {
		t.Fatal("ssh closed after kwl knock")
	}
	time.Sleep(2500 * time.Millisecond) // the door closes
	if ssh("127.0.0.1") {
		t.Fatal("the door outlived its 2s")
	}
	knock() // the same window, most likely: the next token
	if !ssh("127.0.0.1") {
		t.Fatal("ssh closed after a second kwl knock")
	}

	// The eavesdropper's copies of the two tokens.
	var tokens [][]byte
	for deadline := time.Now().Add(5 * time.Second); len(tokens) < 2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		tokens = nil
		readCapture(t, pcap, func(p *capture.Packet) {
			if p.Proto == lang.UDP && p.PayloadN == secret.TokenSize {
				tokens = append(tokens, append([]byte(nil), p.Payload[:]...))
			}
		})
	}
	if len(tokens) != 2 || bytes.Equal(tokens[0], tokens[1]) {
		t.Fatalf("captured %d tokens, want two different ones", len(tokens))
	}
	for _, tok := range tokens {
		send("127.0.0.2", tok)
		if ssh("127.0.0.2") {
			t.Fatal("a replayed token opened ssh for another address")
		}
	}
	time.Sleep(2500 * time.Millisecond)
	send("127.0.0.1", tokens[1])
	if ssh("127.0.0.1") {
		t.Fatal("a replayed token opened ssh again for its first sender")
	}
	w := secret.Window(time.Now(), lang.TokenWindow)
	stale := secret.Token(key, w-lang.TokenSkew-1)
	send("127.0.0.3", stale[:])
	forged := secret.Token([]byte("not the secret, but as long as it"), w)
	send("127.0.0.3", forged[:])
	if ssh("127.0.0.3") {
		t.Fatal("a stale or forged token opened ssh")
	}

	time.Sleep(200 * time.Millisecond)
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	out, err := exec.Command(kwl, "sim", "--format", "json", policy, pcap).Output()
	if err != nil {
		t.Fatalf("kwl sim: %v", err)
	}
	var simv []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			N       int    `json:"n"`
			Verdict string `json:"verdict"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.N > 0 && line.Verdict != "" {
			simv = append(simv, line.Verdict)
		}
	}
	// The capture starts at the first probe tcpdump saw: compare the
	// kernel's verdicts from the end.
	if len(simv) == 0 || len(simv) > len(kernel) {
		t.Fatalf("kwl sim gave %d verdicts for %d packets sent:\n%s", len(simv), len(kernel), out)
	}
	kernel = kernel[len(kernel)-len(simv):]
	for i, v := range simv {
		if v != kernel[i].String() {
			t.Errorf("packet %d: kwl sim %s, kernel %s", i+1, v, kernel[i])
		}
	}
	t.Logf("kwl sim and the kernel compared on %d packets", len(simv))
}

// TestRenewCLI: kwl deploy --renew loads more tokens into the table the
// record's policy was loaded from, refuses a table loaded from another
// policy, and leaves alone a policy without secret knocks.
func TestRenewCLI(t *testing.T) {
	netns.NeedRoot(t, "nft")
	ns := netns.ForTest(t, "kwlc-renew")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ssh.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, policy := kwlAndPolicy(t, fmt.Sprintf("knock udp/62201 secret %q opens ssh for 60s\n", keyFile))
	_, plain := kwlAndPolicy(t, "knock 1600 opens ssh for 60s\nclose ssh on 1599, 1601\n")
	rec := filepath.Join(dir, "record")
	common := []string{"--state-dir", t.TempDir(), "--netns", ns.Name}
	tokens := func() int {
		out, err := ns.Run("nft", "list", "set", "inet", "kwl", "tokens_ssh")
		if err != nil {
			t.Fatalf("nft list: %v %s", err, out)
		}
		return strings.Count(string(out), "0x")
	}
	if code, _, errs := kwlIn(append([]string{"deploy", "--record-dir", rec}, append(common, policy)...)...); code != exitOK {
		t.Fatalf("deploy: %d\n%s", code, errs)
	}
	if n := tokens(); n != 2882 {
		t.Errorf("a deploy loaded %d tokens, want 2882 (a day and the window before)", n)
	}
	code, _, errs := kwlIn(append([]string{"deploy", "--renew", "--tokens", "48h", "--record-dir", rec}, common...)...)
	if code != exitOK || !strings.Contains(errs, "renewed the tokens for 48h0m0s") {
		t.Fatalf("renew: %d\n%s", code, errs)
	}
	if n := tokens(); n != 2882+2880 {
		t.Errorf("after a renewal for 48h: %d tokens, want %d", n, 2882+2880)
	}
	// Another policy loaded meanwhile, without a record: no renewal.
	if code, _, errs := kwlIn(append([]string{"deploy"}, append(common, plain)...)...); code != exitOK {
		t.Fatalf("deploy: %d\n%s", code, errs)
	}
	code, _, errs = kwlIn(append([]string{"deploy", "--renew", "--record-dir", rec}, common...)...)
	if code != exitFail || !strings.Contains(errs, "was not loaded from the recorded policy") {
		t.Errorf("renew over another policy: %d\n%s", code, errs)
	}
	if out, _ := ns.Run("nft", "list", "table", "inet", "kwl"); strings.Contains(string(out), "tokens_ssh") {
		t.Error("a refused renewal loaded the recorded policy")
	}
	// A recorded policy without secret knocks: nothing to renew.
	if code, _, errs := kwlIn(append([]string{"deploy", "--record-dir", rec}, append(common, plain)...)...); code != exitOK {
		t.Fatalf("deploy: %d\n%s", code, errs)
	}
	code, _, errs = kwlIn(append([]string{"deploy", "--renew", "--record-dir", rec}, common...)...)
	if code != exitOK || !strings.Contains(errs, "no tokens to renew") {
		t.Errorf("renew of a policy without secret knocks: %d\n%s", code, errs)
	}
}
