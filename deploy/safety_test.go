//go:build linux

package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// hostfw is a table kwl did not create, under names an admin might pass
// to --table.
const hostfw = `table inet hostfw {
	set allowed { type ipv4_addr; elements = { 192.0.2.1 } }
	chain input { type filter hook input priority 0; policy accept;
		ip saddr @allowed tcp dport 22 accept
	}
}
table inet filter {
	chain input { type filter hook input priority 0; policy accept; }
}
table inet kwl {
	chain input { type filter hook input priority -10; policy accept; tcp dport 9999 drop; }
}
`

func TestForeignTablesRefused(t *testing.T) {
	ns := newNS(t, "owner")
	mustInput(t, ns, []byte(hostfw), "nft", "-f", "-")
	ctx := context.Background()
	for _, name := range []string{"hostfw", "filter", "kwl"} {
		before := nftList(t, ns, "table", "inet", name)
		o := opts(t, ns)
		o.Table = name
		_, err := Apply(ctx, o, sampleRuleset())
		var fe *ForeignTableError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--force-foreign") {
			t.Errorf("deploy --table %s: %v", name, err)
		}
		o.Confirm = time.Second
		if _, err := Apply(ctx, o, sampleRuleset()); !errors.As(err, &fe) {
			t.Errorf("deploy --confirm --table %s: %v", name, err)
		}
		o.Confirm, o.DryRun = 0, true
		if _, err := Apply(ctx, o, sampleRuleset()); !errors.As(err, &fe) {
			t.Errorf("deploy --dry-run --table %s: %v", name, err)
		}
		o.DryRun = false
		if had, err := Undeploy(ctx, o); !errors.As(err, &fe) || had {
			t.Errorf("undeploy --table %s: %v %v", name, had, err)
		}
		if after := nftList(t, ns, "table", "inet", name); after != before {
			t.Errorf("table inet %s changed:\n--- before\n%s\n--- after\n%s", name, before, after)
		}
	}
	// Taken over deliberately, the table becomes kwl's.
	o := opts(t, ns)
	o.ForceForeign = true
	mustDeploy(t, o, sampleRuleset())
	o.ForceForeign = false
	if had, err := Undeploy(ctx, o); err != nil || !had {
		t.Fatalf("undeploy of the table kwl replaced: %v %v", had, err)
	}
}

func TestMarkAndUnguard(t *testing.T) {
	ns := newNS(t, "mark")
	ctx := context.Background()
	o := opts(t, ns)
	o.Policy, o.Guarded = "sha256:0123456789abcdef", []string{"ssh", "https"}
	mustDeploy(t, o, sampleRuleset())
	out := nftList(t, ns, "table", "inet", "kwl")
	if !strings.Contains(out, `comment "kwl policy sha256:0123456789abcdef"`) {
		t.Errorf("no mark in the listing:\n%s", out)
	}
	tg, err := openTarget(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	l, err := tg.readLive(1, "kwl", false) // NFPROTO_INET
	if err != nil || l == nil || l.mark == nil {
		t.Fatalf("read back: %v %v", l, err)
	}
	if got := strings.Join(l.mark.Guarded, ","); got != "https,ssh" {
		t.Errorf("guarded services read back: %q", got)
	}
	// A redeploy that still guards both is fine; one that drops https
	// is refused and changes nothing, unless forced.
	mustDeploy(t, o, modified())
	before := normalize(nftList(t, ns, "table", "inet", "kwl"))
	o.Guarded = []string{"ssh"}
	_, err = Apply(ctx, o, sampleRuleset())
	var ue *UnguardError
	if !errors.As(err, &ue) || strings.Join(ue.Services, ",") != "https" || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("unguarding redeploy: %v", err)
	}
	if after := normalize(nftList(t, ns, "table", "inet", "kwl")); after != before {
		t.Errorf("a refused deploy changed the table")
	}
	o.Force = true
	if _, err := Apply(ctx, o, sampleRuleset()); err != nil {
		t.Fatalf("forced: %v", err)
	}
}

// childEnv asks TestMain to run a deploy with confirmation, as `kwl
// deploy --confirm` would, and wait.
const childEnv = "KWL_TEST_CONFIRM_CHILD"

// confirmChild runs in the child process: NETNS STATEDIR CONFIRM.
func confirmChild(arg string) {
	f := strings.Fields(arg)
	d, _ := time.ParseDuration(f[2])
	o := Options{NetNS: f[0], StateDir: f[1], Confirm: d, Log: os.Stderr}
	var err error
	if len(f) > 3 && f[3] == "iptables" {
		src, rerr := os.ReadFile(filepath.Join("..", "examples", "sshknock.kwl"))
		pol, diags := lang.Load("sshknock.kwl", src)
		rs, more := iptables.Lower(pol)
		if rerr != nil || diags.HasErrors() || more.HasErrors() {
			fmt.Fprintln(os.Stderr, "child:", rerr, diags, more)
			os.Exit(3)
		}
		_, err = ApplyIptables(context.Background(), o, rs)
	} else {
		_, err = Apply(context.Background(), o, modified())
	}
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(3)
}

func TestRollbackAfterSIGKILL(t *testing.T) {
	ns := newNS(t, "kill")
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	must(t, ns, "nft", "add", "element", "inet", "kwl", "door_ssh_6", "{ 2001:db8::10 timeout 60s expires 50s }")
	before := masked(t, ns, "table", "inet", "kwl")
	const confirm = 3 * time.Second
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+ns.Name+" "+o.StateDir+" "+confirm.String())
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	for !strings.Contains(nftList(t, ns, "table", "inet", "kwl"), "dport 443 accept") {
		if time.Since(start) > confirm {
			cmd.Process.Kill()
			t.Fatal("the new ruleset was never loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for {
		cur := masked(t, ns, "table", "inet", "kwl")
		if cur == before {
			break
		}
		if time.Since(start) > confirm+time.Second {
			t.Fatalf("%v after the deploy began, the previous ruleset is not back:\n%s\n---\n%s", time.Since(start), before, cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	if took < confirm-100*time.Millisecond {
		t.Errorf("rolled back after %v, before the deadline", took)
	}
	t.Logf("previous ruleset back %v after the deploy began (confirm %v)", took, confirm)
	if left, ok := expiry(t, ns, "door_ssh_6", "2001:db8::10"); !ok || left > 48*time.Second {
		t.Errorf("door after rollback: %v %v", left, ok)
	}
	// The lock went with the watchdog.
	waitUnlocked(t, o)
}

func waitUnlocked(t *testing.T, o Options) {
	t.Helper()
	for i := 0; ; i++ {
		release, err := lock(&o)
		if err == nil {
			release()
			return
		}
		if i == 100 {
			t.Fatalf("the lock is still held: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfirmNow(t *testing.T) {
	ns := newNS(t, "confnow")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	// A stale pid file of an old kwl, naming a process that SIGUSR1
	// would kill, and a stale socket file: neither is signalled nor
	// taken for a waiting deploy.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	os.WriteFile(filepath.Join(o.StateDir, "confirm."+ns.Name+".pid"), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644)
	key, err := nsKey(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(socketPath(key), nil, 0o600)
	defer os.Remove(socketPath(key))
	if err := ConfirmNow(o); err == nil || !strings.Contains(err.Error(), "no kwl deploy is waiting") {
		t.Errorf("confirm with nothing waiting: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the stale pid's process is gone: %v", err)
	}
	// A waiting deploy is confirmed through another name of the
	// namespace.
	o.Confirm = 10 * time.Second
	done := make(chan error, 1)
	go func() {
		res, err := Apply(ctx, o, modified())
		if err == nil && !res.Confirmed {
			err = errors.New("not confirmed")
		}
		done <- err
	}()
	other := Options{NetNS: filepath.Join(netns.Dir, ns.Name)}
	var cerr error
	for i := 0; i < 200; i++ {
		time.Sleep(20 * time.Millisecond)
		if cerr = ConfirmNow(other); cerr == nil {
			break
		}
	}
	if cerr != nil {
		t.Fatalf("confirm-now: %v", cerr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nftList(t, ns, "table", "inet", "kwl"), "dport 443 accept") {
		t.Errorf("the confirmed ruleset is not loaded")
	}
}

func TestRollbackLeavesForeignTables(t *testing.T) {
	ns := newNS(t, "rbforeign")
	mustInput(t, ns, []byte(foreign), "nft", "-f", "-")
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	before := masked(t, ns, "table", "inet", "kwl")
	o.Confirm = 1500 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Apply(ctx, o, modified()); done <- err }()
	time.Sleep(500 * time.Millisecond)
	// During the confirm window the admin closes inet filter's input
	// chain and deletes table ip nat.
	must(t, ns, "nft", "chain", "inet", "filter", "input", "{ policy drop ; }")
	must(t, ns, "nft", "delete", "table", "ip", "nat")
	changed := listOthers(t, ns)
	if err := <-done; !errors.Is(err, ErrRolledBack) {
		t.Fatalf("want a rollback, got %v", err)
	}
	if after := listOthers(t, ns); after != changed {
		t.Errorf("the rollback changed other tables:\n--- before\n%s\n--- after\n%s", changed, after)
	}
	if !strings.Contains(listOthers(t, ns), "policy drop") {
		t.Errorf("the admin's policy drop is gone")
	}
	if after := masked(t, ns, "table", "inet", "kwl"); after != before {
		t.Errorf("kwl's table is not restored:\n%s\n---\n%s", before, after)
	}
}

func TestLockOneNamespaceManyNames(t *testing.T) {
	ns := newNS(t, "names")
	sleeper := exec.Command("ip", "netns", "exec", ns.Name, "sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	// ip netns exec runs sleep in its own process once it has joined.
	procNS := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	for i := 0; i < 100; i++ {
		if k1, _ := nsKey(ns.Name); k1 != "" {
			if k2, _ := nsKey(procNS); k2 == k1 {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	o := opts(t, ns)
	mustDeploy(t, o, sampleRuleset())
	o.Confirm = 2 * time.Second
	done := make(chan error, 1)
	go func() { _, err := Apply(ctx, o, modified()); done <- err }()
	time.Sleep(300 * time.Millisecond)
	for _, name := range []string{ns.Name, filepath.Join(netns.Dir, ns.Name), procNS} {
		other := Options{NetNS: name, StateDir: t.TempDir()}
		if _, err := Apply(ctx, other, sampleRuleset()); err == nil || !strings.Contains(err.Error(), "another kwl deploy is running") {
			t.Errorf("deploy to %s inside the confirm window: %v", name, err)
		}
		if _, err := Undeploy(ctx, other); err == nil || !strings.Contains(err.Error(), "another kwl deploy is running") {
			t.Errorf("undeploy of %s inside the confirm window: %v", name, err)
		}
	}
	if err := <-done; !errors.Is(err, ErrRolledBack) {
		t.Fatalf("want a rollback, got %v", err)
	}
	waitUnlocked(t, Options{NetNS: procNS})
}
