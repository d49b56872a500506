//go:build linux

package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// kwlRun runs the CLI in process and returns its exit code and stderr.
func kwlRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(&cmdEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, args)
	t.Logf("kwl %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	return code, errb.String()
}

// sshOpen reports whether a connection to 127.0.0.1:22 in ns gets
// through: a listener there, and a dial from inside that kwl's input
// chain sees (loopback traffic passes the input hook).
func sshOpen(t *testing.T, ns *netns.NS) bool {
	t.Helper()
	var open bool
	err := ns.Do(func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:22")
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := net.DialTimeout("tcp4", "127.0.0.1:22", 400*time.Millisecond)
		if err == nil {
			c.Close()
			open = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return open
}

var volatileRE = regexp.MustCompile(`(?m)^\s*(elements = .*|expires .*)$|\s+# handle \d+`)

// nftTable lists kwl's table in ns without elements; "" when there is none.
func nftTable(t *testing.T, ns *netns.NS) string {
	t.Helper()
	out, err := ns.Run("nft", "list", "table", "inet", "kwl")
	if err != nil {
		if strings.Contains(err.Error(), "No such file") {
			return ""
		}
		t.Fatal(err)
	}
	return volatileRE.ReplaceAllString(string(out), "")
}

// TestRestore deploys into one namespace and restores the record into
// fresh ones: the same table; with the policy damaged, the fail-closed
// table, which drops new ssh; after an undeploy, nothing.
func TestRestore(t *testing.T) {
	netns.NeedRoot(t, "nft")
	group := netns.Group("kwlr")
	var nss []*netns.NS
	for _, role := range []string{"a", "b", "c", "d", "e"} {
		ns, err := netns.New(group + "-" + role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Delete() })
		nss = append(nss, ns)
	}
	ns1, ns2, ns3, ns4, ns5 := nss[0], nss[1], nss[2], nss[3], nss[4]
	rec := filepath.Join(t.TempDir(), "deployed")
	state := t.TempDir()
	common := []string{"--state-dir", state, "--record-dir", rec}

	if code, _ := kwlRun(t, append([]string{"deploy", "--netns", ns1.Name}, append(common, "../../examples/sshknock.kwl")...)...); code != 0 {
		t.Fatalf("deploy exited %d", code)
	}
	want := nftTable(t, ns1)
	if !strings.Contains(want, "chain svc_ssh") {
		t.Fatalf("deployed table:\n%s", want)
	}

	t.Run("same ruleset", func(t *testing.T) {
		if !sshOpen(t, ns2) {
			t.Fatal("ssh is closed before any restore: the probe cannot tell")
		}
		code, stderr := kwlRun(t, append([]string{"restore", "--netns", ns2.Name}, common...)...)
		if code != 0 || !strings.Contains(stderr, "restored ") {
			t.Fatalf("restore exited %d", code)
		}
		if got := nftTable(t, ns2); got != want {
			t.Errorf("restored table differs from the deployed one:\n%s\nwant:\n%s", got, want)
		}
		if sshOpen(t, ns2) {
			t.Error("ssh without a knock gets through after restore")
		}
	})

	t.Run("fail closed", func(t *testing.T) {
		r, err := record.Load(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.PolicyPath(), []byte("knock 1600 opens ssh for 60s; oops\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !sshOpen(t, ns3) {
			t.Fatal("ssh is closed before any restore: the probe cannot tell")
		}
		code, stderr := kwlRun(t, append([]string{"restore", "--netns", ns3.Name}, common...)...)
		if code != 1 {
			t.Errorf("restore of a damaged policy exited %d, want 1", code)
		}
		for _, w := range []string{"corrupt policy", "fail-closed policy", "ssh (tcp/22)"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q", w)
			}
		}
		if sshOpen(t, ns3) {
			t.Error("ssh is open after a failed restore")
		}
		tab := nftTable(t, ns3)
		if strings.Contains(tab, "chain knock") || !strings.Contains(tab, "ct state new drop") {
			t.Errorf("fail-closed table:\n%s", tab)
		}

		// A record that is not JSON at all: the fail-closed policy, apart,
		// still loads.
		if err := os.WriteFile(filepath.Join(rec, record.RecordFile), []byte("\x00garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, stderr := kwlRun(t, append([]string{"restore", "--netns", ns3.Name}, common...)...); code != 1 || !strings.Contains(stderr, "corrupt record") || !strings.Contains(stderr, "fail-closed policy instead") {
			t.Errorf("restore of a garbage record exited %d", code)
		}
		if sshOpen(t, ns3) {
			t.Error("ssh is open after a restore of a garbage record")
		}
	})

	t.Run("no longer compiles", func(t *testing.T) {
		// A record whose hash is right but whose policy this kwl refuses
		// (as an older kwl's record might be).
		dir := filepath.Join(t.TempDir(), "rec")
		good, err := os.ReadFile("../../examples/sshknock.kwl")
		if err != nil {
			t.Fatal(err)
		}
		pol := checkedPolicy(t, good)
		bad := []byte("knock 1600 opens ssh for 60s\nlimit ssh 0/60s\n")
		if err := record.Save(dir, &record.Record{Backend: "nft", Table: "kwl", File: "p.kwl", Text: bad, Kwl: "old"}, record.ClosedOf(pol, "nft", "kwl", good)); err != nil {
			t.Fatal(err)
		}
		code, stderr := kwlRun(t, "restore", "--netns", ns5.Name, "--state-dir", state, "--record-dir", dir)
		if code != 1 || !strings.Contains(stderr, ":2:") || !strings.Contains(stderr, "has errors") || !strings.Contains(stderr, "fail-closed policy instead") {
			t.Errorf("restore of a policy with errors exited %d", code)
		}
		if !strings.Contains(stderr, "deployed by kwl old") {
			t.Error("restore does not say that another kwl deployed the policy")
		}
		if sshOpen(t, ns5) {
			t.Error("ssh is open after a failed restore")
		}
	})

	t.Run("undeploy", func(t *testing.T) {
		if code, _ := kwlRun(t, append([]string{"undeploy", "--netns", ns1.Name}, common...)...); code != 0 {
			t.Fatalf("undeploy exited %d", code)
		}
		code, stderr := kwlRun(t, append([]string{"restore", "--netns", ns4.Name}, common...)...)
		if code != 0 || !strings.Contains(stderr, "nothing to restore") {
			t.Errorf("restore after undeploy exited %d", code)
		}
		if tab := nftTable(t, ns4); tab != "" {
			t.Errorf("restore after undeploy loaded:\n%s", tab)
		}
	})

	t.Run("nothing at all", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "none")
		code, stderr := kwlRun(t, "restore", "--netns", ns4.Name, "--state-dir", state, "--record-dir", empty)
		if code != 1 || !strings.Contains(stderr, "no record of a deploy") || !strings.Contains(stderr, "NOTHING was loaded") {
			t.Errorf("restore without a record exited %d", code)
		}
	})
}

// TestSystemdUnit checks dist/systemd/kwl.service with systemd-analyze
// verify, and that it is ordered to run before the network is up.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../dist/systemd/kwl.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, line := range []string{
		"DefaultDependencies=no",
		"Wants=network-pre.target",
		"Before=network-pre.target shutdown.target",
		"After=local-fs.target systemd-modules-load.service",
		"RequiresMountsFor=/var/lib/kwl",
		"ExecStart=/usr/local/bin/kwl restore",
		"Type=oneshot",
		"RemainAfterExit=yes",
		"WantedBy=sysinit.target",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit) {
			t.Errorf("kwl.service lacks the line %q", line)
		}
	}
	if regexp.MustCompile(`(?m)^ExecStop`).MatchString(unit) {
		t.Error("kwl.service has an ExecStop: stopping the unit must leave the policy in force")
	}
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	// verify wants the commands to exist: point them at this test binary.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "kwl.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/kwl", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify kwl.service: %v\n%s", err, out)
	}
}

func checkedPolicy(t *testing.T, src []byte) *lang.Policy {
	t.Helper()
	p, diags := lang.Load("p.kwl", src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return p
}

// TestRestoreIptables: a deploy with the iptables backend restores the
// same chains into a fresh namespace, and a damaged one fails closed.
func TestRestoreIptables(t *testing.T) {
	netns.NeedRoot(t, "iptables-restore", "ip6tables-restore", "iptables-save")
	group := netns.Group("kwlr")
	var nss []*netns.NS
	for _, role := range []string{"a", "b", "c"} {
		ns, err := netns.New(group + "-" + role)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Delete() })
		nss = append(nss, ns)
	}
	rec := filepath.Join(t.TempDir(), "deployed")
	common := []string{"--state-dir", t.TempDir(), "--record-dir", rec}
	if code, _ := kwlRun(t, append([]string{"deploy", "--backend", "iptables", "--netns", nss[0].Name}, append(common, "../../examples/sshknock.kwl")...)...); code != 0 {
		t.Fatalf("deploy exited %d", code)
	}
	save := func(ns *netns.NS) string {
		var b strings.Builder
		for _, tool := range []string{"iptables-save", "ip6tables-save"} {
			out, err := ns.Run(tool)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "kwl") {
					b.WriteString(countersRE.ReplaceAllString(l, "") + "\n")
				}
			}
		}
		return b.String()
	}
	want := save(nss[0])
	if code, _ := kwlRun(t, append([]string{"restore", "--netns", nss[1].Name}, common...)...); code != 0 {
		t.Fatalf("restore exited %d", code)
	}
	if got := save(nss[1]); got != want || !strings.Contains(got, "kwl-svc-ssh") {
		t.Errorf("restored chains:\n%s\nwant:\n%s", got, want)
	}
	if sshOpen(t, nss[1]) {
		t.Error("ssh without a knock gets through after restore")
	}

	r, err := record.Load(rec)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.PolicyPath(), []byte("damaged"), 0o600)
	if !sshOpen(t, nss[2]) {
		t.Fatal("ssh is closed before any restore: the probe cannot tell")
	}
	if code, stderr := kwlRun(t, append([]string{"restore", "--netns", nss[2].Name}, common...)...); code != 1 || !strings.Contains(stderr, "fail-closed policy instead (iptables backend)") {
		t.Errorf("restore of a damaged policy exited %d", code)
	}
	if sshOpen(t, nss[2]) {
		t.Error("ssh is open after a failed restore")
	}
}

var countersRE = regexp.MustCompile(`\[\d+:\d+\]`)

// TestRenewUnits checks dist/systemd/kwl-renew.{service,timer}: the
// service renews the deployed policy's tokens after kwl.service, the
// timer runs it hourly, and systemd-analyze verify finds nothing wrong.
func TestRenewUnits(t *testing.T) {
	want := map[string][]string{
		"kwl-renew.service": {"ExecStart=/usr/local/bin/kwl deploy --renew", "Type=oneshot", "After=kwl.service", "Requires=kwl.service"},
		"kwl-renew.timer":   {"OnUnitActiveSec=1h", "Persistent=true", "WantedBy=timers.target"},
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kwl.service", "kwl-renew.service", "kwl-renew.timer"} {
		b, err := os.ReadFile(filepath.Join("../../dist/systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range want[name] {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).Match(b) {
				t.Errorf("%s lacks the line %q", name, line)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(string(b), "/usr/local/bin/kwl", exe)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	out, err := exec.Command(tool, "verify", filepath.Join(dir, "kwl-renew.timer"), filepath.Join(dir, "kwl-renew.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
