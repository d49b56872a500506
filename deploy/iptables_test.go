//go:build linux

package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// example compiles examples/NAME.kwl for iptables.
func example(t *testing.T, name string) *iptables.Ruleset {
	t.Helper()
	file := filepath.Join("..", "examples", name+".kwl")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return loweredFile(t, file, string(src))
}

// lowered compiles policy text for iptables.
func lowered(t *testing.T, src string) *iptables.Ruleset {
	t.Helper()
	return loweredFile(t, "p.kwl", src)
}

func loweredFile(t *testing.T, file, src string) *iptables.Ruleset {
	t.Helper()
	pol, diags := lang.Load(file, []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs, diags := iptables.Lower(pol)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return rs
}

// iptNS creates a namespace with a host rule and policy of its own in
// both families, which no kwl command may change.
func iptNS(t *testing.T, role string) *netns.NS {
	t.Helper()
	ns := newNS(t, role)
	for _, cmd := range iptablesCmds {
		if _, err := ns.Run(cmd, "-P", "INPUT", "DROP"); err != nil {
			t.Skipf("%s: %v", cmd, err)
		}
		must(t, ns, cmd, "-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT")
	}
	must(t, ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "8081", "-j", "RETURN")
	return ns
}

// saved returns what iptables-save and ip6tables-save print in ns,
// without comments and counters: every table, both families.
func saved(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range iptablesCmds {
		out, err := ns.Run(cmd + "-save")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				b.WriteString(cmd + " " + l + "\n")
			}
		}
	}
	return b.String()
}

// kwlLines returns the lines of saved that name kwl.
func kwlLines(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "kwl") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// hostLines returns the lines of saved that do not name kwl.
func hostLines(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "kwl") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func mustApply(t *testing.T, o Options, rs *iptables.Ruleset) *IptablesResult {
	t.Helper()
	res, err := ApplyIptables(context.Background(), o, rs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestIptablesRedeploy: a redeploy from forward.kwl to sshknock.kwl
// leaves exactly what a first deploy of sshknock.kwl leaves (the DNAT
// and forward chains are gone), the host's rules and policies stay, and
// undeploy leaves no line of kwl in any table of either family.
func TestIptablesRedeploy(t *testing.T) {
	ns := iptNS(t, "iptre")
	o := opts(t, ns)
	host := saved(t, ns)
	fwd, ssh := example(t, "forward"), example(t, "sshknock")

	mustApply(t, o, ssh)
	fresh := kwlLines(saved(t, ns))
	if !strings.Contains(fresh, "-A INPUT -j kwl-input") {
		t.Fatalf("no jump after a deploy:\n%s", fresh)
	}
	if had, err := UndeployIptables(context.Background(), o); err != nil || !had {
		t.Fatalf("undeploy: %v, %v", had, err)
	}

	res := mustApply(t, o, fwd)
	if res.Replaced {
		t.Errorf("first deploy says it replaced something")
	}
	if s := saved(t, ns); !strings.Contains(s, "-A PREROUTING -j kwl-prerouting") || !strings.Contains(s, "-A FORWARD -j kwl-forward") {
		t.Fatalf("forward.kwl not loaded:\n%s", s)
	}
	res = mustApply(t, o, ssh)
	if !res.Replaced {
		t.Errorf("redeploy does not say it replaced kwl's chains")
	}
	s := saved(t, ns)
	if got := kwlLines(s); got != fresh {
		t.Errorf("after forward.kwl then sshknock.kwl:\n%s\nwant what sshknock.kwl alone loads:\n%s", got, fresh)
	}
	if hostLines(s) != hostLines(host) {
		t.Errorf("the host's rules changed:\n%s\nwant\n%s", hostLines(s), hostLines(host))
	}

	had, err := UndeployIptables(context.Background(), o)
	if err != nil || !had {
		t.Fatalf("undeploy: %v, %v", had, err)
	}
	if s := saved(t, ns); kwlLines(s) != "" || s != host {
		t.Errorf("after undeploy:\n%s\nwant\n%s", s, host)
	}
	if had, err := UndeployIptables(context.Background(), o); err != nil || had {
		t.Errorf("second undeploy: %v, %v; want nothing to do", had, err)
	}
}

// TestIptablesRecentKept: the entries of a recent list the new ruleset
// still uses survive a redeploy, and the result counts them.
func TestIptablesRecentKept(t *testing.T) {
	ns := iptNS(t, "iptkeep")
	o := opts(t, ns)
	ssh := example(t, "sshknock")
	mustApply(t, o, example(t, "forward"))
	mustApply(t, o, ssh)
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_door_ssh_4")
	res := mustApply(t, o, ssh)
	if res.Kept["kwl_door_ssh_4"] != 1 {
		t.Errorf("kept %v, want kwl_door_ssh_4: 1", res.Kept)
	}
	list, err := ns.Run("cat", "/proc/net/xt_recent/kwl_door_ssh_4")
	if err != nil || !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("recent list lost by the redeploy: %s %v", list, err)
	}
	st, err := IptablesStatus(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range st.Lists {
		if l.Name == "kwl_door_ssh_4" && len(l.Entries) == 1 && l.Entries[0].Source == "198.51.100.10" && l.Entries[0].Stamps == 1 {
			found = true
			// The door was stamped just now: its 60 s are nearly all left.
			if left := l.Entries[0].Left; left < 55 || left > 61 {
				t.Errorf("the door has %.3fs left, want about 60s", left)
			}
		}
	}
	if !found {
		t.Errorf("status lists %+v, want kwl_door_ssh_4 with 198.51.100.10", st.Lists)
	}
	var b strings.Builder
	st.Write(&b)
	if !strings.Contains(b.String(), "198.51.100.10") || !strings.Contains(b.String(), "s left") {
		t.Errorf("status text has no time left:\n%s", b.String())
	}
}

// TestIptablesRekeyedList: a redeploy that changes a limit's key (per
// source to per source/24) counts by the new key. The kernel keeps a
// list's --mask from the rule that created it for as long as a rule
// uses the list, so the new key is a new list, created by the new rules;
// the old one goes with its last rule.
func TestIptablesRekeyedList(t *testing.T) {
	ns := iptNS(t, "iptkey")
	o := opts(t, ns)
	mustApply(t, o, lowered(t, "limit ssh 3/60s per source\n"))
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_lim_ssh_4")
	mustApply(t, o, lowered(t, "limit ssh 3/60s per source/24\n"))
	if s := saved(t, ns); !strings.Contains(s, "--name kwl_lim_ssh_m24_4 --mask 255.255.255.0") || strings.Contains(s, "kwl_lim_ssh_4 ") {
		t.Errorf("after the redeploy the rules are:\n%s\nwant them on kwl_lim_ssh_m24_4 alone", kwlLines(s))
	}
	if lists, err := ns.Run("ls", "/proc/net/xt_recent"); err != nil || strings.Contains(string(lists), "kwl_lim_ssh_4\n") {
		t.Errorf("lists %q, %v: the list of the old key outlived its rules", lists, err)
	}
	if out, err := ns.Run("cat", "/proc/net/xt_recent/kwl_lim_ssh_m24_4"); err != nil || len(out) != 0 {
		t.Errorf("the list of the new key: %q, %v; want a fresh, empty list", out, err)
	}
}

// TestIptablesStatus: status finds kwl's chains in both families and
// tables, however they were loaded: here by iptables-restore from
// kwl compile's output, with nothing recorded.
func TestIptablesStatus(t *testing.T) {
	ns := iptNS(t, "iptst")
	o := opts(t, ns)
	st, err := IptablesStatus(context.Background(), o)
	if err != nil || st.Loaded {
		t.Fatalf("status before: %+v, %v", st, err)
	}
	v4, v6, err := example(t, "forward").Render()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ns.RunInput([]byte(v4), "iptables-restore", "--noflush"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := ns.RunInput([]byte(v6), "ip6tables-restore", "--noflush"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	st, err = IptablesStatus(context.Background(), o)
	if err != nil || !st.Loaded {
		t.Fatalf("status: %+v, %v", st, err)
	}
	var b strings.Builder
	st.Write(&b)
	for _, want := range []string{"iptables table nat", "jump -A PREROUTING -j kwl-prerouting", "chain kwl-knock", "ip6tables table filter", "recent list kwl_door_inside_ssh_4: 0 entries"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	if had, err := UndeployIptables(context.Background(), o); err != nil || !had {
		t.Fatalf("undeploy: %v, %v", had, err)
	}
	if s := kwlLines(saved(t, ns)); s != "" {
		t.Errorf("after undeploy:\n%s", s)
	}
}

// TestIptablesDryRun: a dry run says what would change and changes
// nothing.
func TestIptablesDryRun(t *testing.T) {
	ns := iptNS(t, "iptdry")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	before := saved(t, ns)
	o.DryRun = true
	res := mustApply(t, o, example(t, "sshknock"))
	if after := saved(t, ns); after != before {
		t.Errorf("a dry run changed the rules:\n%s\nwas\n%s", after, before)
	}
	all := strings.Join(res.Changes, "\n")
	for _, want := range []string{"iptables nat: - chain kwl-prerouting (1 rule)", "iptables nat: - jump -A PREROUTING -j kwl-prerouting", "iptables filter: - chain kwl-forward", "iptables filter: ~ chain kwl-knock", "iptables filter: + chain kwl-svc-ssh"} {
		if !strings.Contains(all, want) {
			t.Errorf("changes lack %q:\n%s", want, all)
		}
	}
	// A policy as it is loaded is no change, whatever iptables-save
	// adds (a /32, a --mask) or splits (-s A,B).
	for _, name := range []string{"forward", "sources", "sshknock", "limit", "sequence", "oneliner", "ufw"} {
		o.DryRun = false
		mustApply(t, o, example(t, name))
		o.DryRun = true
		if res := mustApply(t, o, example(t, name)); len(res.Changes) != 0 {
			t.Errorf("%s over itself changes %q", name, res.Changes)
		}
	}
}

// TestIptablesFamilyFailure: when ip6tables-restore fails after
// iptables-restore succeeded, both families are as they were.
func TestIptablesFamilyFailure(t *testing.T) {
	ns := iptNS(t, "iptfail")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_door_inside_ssh_4")
	before := saved(t, ns)
	iptablesInject = func(cmd, input string) string {
		if cmd == "ip6tables" {
			return strings.Replace(input, "COMMIT\n", "-A kwl-input -j no-such-chain\nCOMMIT\n", 1)
		}
		return input
	}
	defer func() { iptablesInject = nil }()
	res, err := ApplyIptables(context.Background(), o, example(t, "sshknock"))
	if err == nil || !strings.Contains(err.Error(), "ip6tables-restore") || !strings.Contains(err.Error(), "as they were") {
		t.Fatalf("err = %v, want ip6tables-restore's failure and the rollback", err)
	}
	if !res.RolledBack {
		t.Errorf("result does not say it rolled back")
	}
	if after := saved(t, ns); after != before {
		t.Errorf("after a failed ip6tables-restore:\n%s\nwant\n%s", after, before)
	}
	list, _ := ns.Run("cat", "/proc/net/xt_recent/kwl_door_inside_ssh_4")
	if !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("the rollback lost the door: %q", list)
	}
}

// TestIptablesConfirm: without confirmation in time kwl's rules come
// back as they were; with it, the new ones stay.
func TestIptablesConfirm(t *testing.T) {
	ns := iptNS(t, "iptconf")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_door_inside_ssh_4")
	before := saved(t, ns)
	o.Confirm = 300 * time.Millisecond
	res, err := ApplyIptables(context.Background(), o, example(t, "sshknock"))
	if !errors.Is(err, ErrRolledBack) || !res.RolledBack {
		t.Fatalf("err = %v, want ErrRolledBack", err)
	}
	if after := saved(t, ns); after != before {
		t.Errorf("after the rollback:\n%s\nwant\n%s", after, before)
	}
	if _, err := os.Stat(IptablesRollbackFile(o)); !os.IsNotExist(err) {
		t.Errorf("rollback file left behind: %v", err)
	}
	// kwl-keep held the door's list through the window the new rules
	// did not use it.
	list, _ := ns.Run("cat", "/proc/net/xt_recent/kwl_door_inside_ssh_4")
	if !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("the rollback lost the door: %q", list)
	}
	confirmed := make(chan struct{}, 1)
	confirmed <- struct{}{}
	o.Confirm, o.Confirmed = time.Minute, confirmed
	res, err = ApplyIptables(context.Background(), o, example(t, "sshknock"))
	if err != nil || !res.Confirmed {
		t.Fatalf("confirmed deploy: %v", err)
	}
	if s := saved(t, ns); strings.Contains(s, "kwl-prerouting") || !strings.Contains(s, "kwl-svc-ssh") {
		t.Errorf("the confirmed ruleset is not loaded:\n%s", s)
	}
}

// TestIptablesSaveRestore: RestoreIptables brings back exactly what
// SaveIptables saved, whatever was deployed in between, and leaves the
// host's rules alone.
func TestIptablesSaveRestore(t *testing.T) {
	ns := iptNS(t, "iptsave")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	before := saved(t, ns)
	file := filepath.Join(t.TempDir(), "kwl.json")
	if err := SaveIptables(o, file); err != nil {
		t.Fatal(err)
	}
	mustApply(t, o, example(t, "limit"))
	must(t, ns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9090", "-j", "ACCEPT")
	if err := RestoreIptables(o, file); err != nil {
		t.Fatal(err)
	}
	after := saved(t, ns)
	if kwlLines(after) != kwlLines(before) || !strings.Contains(after, "--dport 9090 -j ACCEPT") {
		t.Errorf("after restore:\n%s\nwant kwl's lines of\n%s\nand the host's new rule", after, before)
	}
	// An empty save restores to no kwl rules at all.
	if _, err := UndeployIptables(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if err := SaveIptables(o, file); err != nil {
		t.Fatal(err)
	}
	mustApply(t, o, example(t, "sshknock"))
	if err := RestoreIptables(o, file); err != nil {
		t.Fatal(err)
	}
	if s := kwlLines(saved(t, ns)); s != "" {
		t.Errorf("restoring an empty save left:\n%s", s)
	}
}

// TestIptablesForeignJump: a chain of the host that jumps into kwl's
// chains stops an undeploy (and a deploy that would delete that chain)
// before anything changes.
func TestIptablesForeignJump(t *testing.T) {
	ns := iptNS(t, "iptfor")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	for _, args := range [][]string{{"-N", "host-chain"}, {"-A", "host-chain", "-j", "kwl-forward"}} {
		must(t, ns, "iptables", args...)
	}
	before := saved(t, ns)
	_, err := UndeployIptables(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "chain host-chain jumps to kwl's chain kwl-forward") {
		t.Errorf("undeploy: %v", err)
	}
	_, err = ApplyIptables(context.Background(), o, example(t, "sshknock"))
	if err == nil || !strings.Contains(err.Error(), "host-chain") {
		t.Errorf("deploy: %v", err)
	}
	if after := saved(t, ns); after != before {
		t.Errorf("a refusal changed the rules:\n%s\nwas\n%s", after, before)
	}
}

func TestParseRecent(t *testing.T) {
	got := parseRecent("src=198.51.100.10 ttl: 64 last_seen: 4296066345 oldest_pkt: 2 4296066000, 4296066345\nsrc=2001:db8::1 ttl: 0 last_seen: 1 oldest_pkt: 1 1\n")
	if len(got) != 2 || got[0].Source != "198.51.100.10" || got[0].Stamps != 2 || got[1].Source != "2001:db8::1" || got[1].Stamps != 1 ||
		got[0].lastSeen != 4296066345 || got[1].lastSeen != 1 {
		t.Errorf("parseRecent = %+v", got)
	}
}

// TestKernelClock: the time and jiffies of /proc/timer_list, and the HZ
// nearest to a measured rate.
func TestKernelClock(t *testing.T) {
	ns, j, err := parseTimerList("Timer List Version: v0.9\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 76258643144655 nsecs\n\ncpu: 0\n jiffies: 4313956928\njiffies: 1\n")
	if err != nil || ns != 76258643144655 || j != 4313956928 {
		t.Errorf("parseTimerList = %d, %d, %v", ns, j, err)
	}
	if _, _, err := parseTimerList("now at x nsecs\n"); err == nil {
		t.Error("parseTimerList of nothing: no error")
	}
	for rate, want := range map[float64]uint64{99: 100, 240: 250, 262: 250, 290: 300, 700: 1000, 1010: 1000} {
		if got := nearestHZ(rate); got != want {
			t.Errorf("nearestHZ(%v) = %d, want %d", rate, got, want)
		}
	}
	if _, hz, err := kernelClock(); err != nil || hz == 0 {
		t.Skipf("no /proc/timer_list here: %v", err)
	}
}

// TestIptablesRestoreAfterKill: a deploy killed while it waited for
// confirmation leaves the new rules, kwl-keep and the rollback file;
// RestoreIptables of that file brings back the old rules with the
// entries of their lists, and deletes kwl-keep.
func TestIptablesRestoreAfterKill(t *testing.T) {
	ns := iptNS(t, "iptkill")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_door_inside_ssh_4")
	before := saved(t, ns)
	cur, err := readIptables(&o)
	if err != nil {
		t.Fatal(err)
	}
	file := IptablesRollbackFile(o)
	if err := writeIptablesFile(file, cur); err != nil {
		t.Fatal(err)
	}
	rs := example(t, "sshknock")
	// What ApplyIptables does up to the wait, without deleting kwl-keep.
	want4, err := familyOf("iptables", rs.V4)
	if err != nil {
		t.Fatal(err)
	}
	want6, err := familyOf("ip6tables", rs.V6)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := change(&o, cur, [2]*IptablesFamily{want4, want6}); err != nil {
		t.Fatal(err)
	}
	if s := saved(t, ns); !strings.Contains(s, ":kwl-keep") || strings.Contains(s, "kwl-prerouting") {
		t.Fatalf("mid-deploy:\n%s", s)
	}
	if err := RestoreIptables(o, file); err != nil {
		t.Fatal(err)
	}
	if after := saved(t, ns); after != before {
		t.Errorf("after restore:\n%s\nwant\n%s", after, before)
	}
	list, _ := ns.Run("cat", "/proc/net/xt_recent/kwl_door_inside_ssh_4")
	if !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("the restore lost the door: %q", list)
	}
}

func TestParseSave(t *testing.T) {
	f, err := parseSave("iptables", `# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:kwl-prerouting - [0:0]
[3:180] -A PREROUTING -j kwl-prerouting
-A PREROUTING -p tcp --dport 8081 -j RETURN
-A kwl-prerouting -p tcp -j DNAT --to-destination 192.168.1.5
COMMIT
*filter
:INPUT DROP [0:0]
:host - [0:0]
:kwl-input - [0:0]
:kwl-keep - [0:0]
-A INPUT -m comment --comment "a b" -g kwl-input
-A host -j kwl-input
-A kwl-keep -m recent --rcheck --name x --rsource
[7:420] -A kwl-input -j ACCEPT
COMMIT
`)
	if err != nil {
		t.Fatal(err)
	}
	nat, filter := f.table("nat"), f.table("filter")
	if len(nat.Jumps) != 1 || nat.Jumps[0].Rule != "-j kwl-prerouting" || len(nat.Chains) != 1 || len(nat.Chains[0].Rules) != 1 {
		t.Errorf("nat = %+v", nat)
	}
	if len(filter.Jumps) != 1 || filter.Jumps[0].Chain != "INPUT" || len(filter.foreign) != 1 || filter.foreign[0].Chain != "host" {
		t.Errorf("filter = %+v", filter)
	}
	if len(filter.Chains) != 1 || filter.Chains[0].Rules[0].Packets != 7 || filter.Chains[0].Rules[0].Bytes != 420 || !f.keeper {
		t.Errorf("filter chains = %+v, keeper %v", filter.Chains, f.keeper)
	}
	for _, bad := range []string{"-A INPUT -j x\n", "*filter\n:x\n", "*filter\n[1:2 -A x\n", "*filter\n-A INPUT -m comment --comment \"open -j kwl-x\n", "*filter\nbogus\n"} {
		if _, err := parseSave("iptables", bad); err == nil {
			t.Errorf("parseSave(%q) = nil error", bad)
		}
	}
	if got := parseRecent("src=\nsrc=1.2.3.4\n"); len(got) != 1 || got[0].Stamps != 0 {
		t.Errorf("parseRecent of short lines = %+v", got)
	}
}

func TestTransactionRefusesForeignJump(t *testing.T) {
	cur := &IptablesFamily{Cmd: "iptables", Tables: []*IptablesTable{{Name: "filter",
		Chains:  []IptablesChain{{Name: "kwl-input"}},
		foreign: []IptablesJump{{Chain: "host", Rule: "-j kwl-input"}}}}}
	if _, err := transaction(cur, &IptablesFamily{Cmd: "iptables"}); err == nil || !strings.Contains(err.Error(), "chain host jumps to kwl's chain kwl-input") {
		t.Errorf("err = %v", err)
	}
	keep := &IptablesFamily{Cmd: "iptables", Tables: []*IptablesTable{{Name: "filter", Chains: []IptablesChain{{Name: "kwl-input"}}}}}
	if _, err := transaction(cur, keep); err != nil {
		t.Errorf("keeping the chain: %v", err)
	}
}

// TestIptablesRollbackAfterSIGKILL: an iptables deploy with --confirm
// hands its rollback to the watchdog, so that kwl's rules (and the door
// of a recent list) are as they were at the deadline even when the
// deploying process is killed with SIGKILL.
func TestIptablesRollbackAfterSIGKILL(t *testing.T) {
	ns := iptNS(t, "iptsigkill")
	o := opts(t, ns)
	mustApply(t, o, example(t, "forward"))
	must(t, ns, "sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/kwl_door_inside_ssh_4")
	before := saved(t, ns)
	const confirm = 3 * time.Second
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+ns.Name+" "+o.StateDir+" "+confirm.String()+" iptables")
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	for strings.Contains(saved(t, ns), "kwl-prerouting") {
		if time.Since(start) > confirm {
			cmd.Process.Kill()
			t.Fatal("the new rules were never loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for {
		if saved(t, ns) == before {
			break
		}
		if time.Since(start) > confirm+time.Second {
			t.Fatalf("%v after the deploy began, kwl's rules are not back:\n%s\nwant\n%s", time.Since(start), saved(t, ns), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	if took < confirm-100*time.Millisecond {
		t.Errorf("rolled back after %v, before the deadline", took)
	}
	t.Logf("kwl's iptables rules back %v after the deploy began (confirm %v)", took, confirm)
	list, _ := ns.Run("cat", "/proc/net/xt_recent/kwl_door_inside_ssh_4")
	if !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("the rollback lost the door: %q", list)
	}
	waitUnlocked(t, o)
}
