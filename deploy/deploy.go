// Package deploy loads a kwl ruleset into the running kernel over
// netlink (no nft binary), removes it, and reports what is loaded.
//
// kwl owns exactly one nftables table (inet kwl unless told otherwise)
// and never reads or changes another. A deploy is one nfnetlink batch,
// one transaction for the kernel: it creates the table if it is missing,
// deletes it, and builds the new table with its sets, chains and rules,
// and with the live elements of the old table's sets that the new
// ruleset still has (doors, bans), each with the life it had left. The
// kernel applies all of it or none of it; when it refuses, the error
// names the statement whose rule it refused.
//
// Conntrack is independent of the table, so established connections go
// on being accepted by the new ruleset's established rule.
//
// With a confirmation delay (Options.Confirm), Apply keeps a copy of the
// table as it was (read raw, so that it can be sent back byte for byte)
// and restores it, state included, unless confirmation arrives in time.
//
// The iptables backend (ApplyIptables, UndeployIptables, IptablesStatus,
// SaveIptables, RestoreIptables) owns the chains named kwl-* and the
// jumps into them, found with iptables-save in every table of both
// families; see iptables.go for how a deploy replaces them.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
)

// DefaultTable is the name of the table kwl owns.
const DefaultTable = "kwl"

// DefaultStateDir holds deploy's lock and the pid of a deploy waiting
// for confirmation.
const DefaultStateDir = "/run/kwl"

// Options says where and how to deploy.
type Options struct {
	// NetNS names the network namespace to work in (a name under
	// /run/netns, or a path); "" is the namespace of the process.
	NetNS string
	// Table overrides the ruleset's table name (inet kwl).
	Table string
	// StateDir holds the lock and the confirmation pid file;
	// DefaultStateDir when empty.
	StateDir string
	// DryRun computes the changes and changes nothing.
	DryRun bool
	// Confirm, when positive, makes Apply wait that long for a
	// confirmation (Confirmed) after applying, and restore the previous
	// table with its state if none comes or ctx ends first.
	Confirm   time.Duration
	Confirmed <-chan struct{}
	// Log receives progress messages (waiting, rolled back); nil: none.
	Log io.Writer

	// inject, for tests, adds messages to the batch after the ruleset's.
	inject func(b *nft.Batch)
}

func (o *Options) stateDir() string {
	if o.StateDir != "" {
		return o.StateDir
	}
	return DefaultStateDir
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format, args...)
	}
}

// suffix distinguishes the lock and pid files of one namespace.
func (o *Options) suffix() string {
	if o.NetNS == "" {
		return ""
	}
	return "." + strings.ReplaceAll(filepath.Base(o.NetNS), "/", "_")
}

// Result says what Apply did.
type Result struct {
	// Replaced is set when a kwl table was loaded before.
	Replaced bool
	// Kept counts, per set, the elements carried over from the old table.
	Kept map[string]int
	// Table is the table loaded ("inet kwl").
	Table string
	// Changes lists what differs between the live table and the new one
	// (computed for a dry run only).
	Changes *Diff
	// Messages is the number of netlink messages of the batch.
	Messages int
	// Confirmed is set when a confirmation arrived in time; RolledBack
	// when the previous table was restored instead.
	Confirmed, RolledBack bool
}

// check refuses early what cannot work: no CAP_NET_ADMIN.
func check() error {
	if !hasNetAdmin() {
		return ErrPermission
	}
	return nil
}

// lock takes the deploy lock (flock on StateDir/lock), failing at once if
// another kwl holds it.
func lock(o *Options) (release func(), err error) {
	dir := o.stateDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	p := filepath.Join(dir, "lock"+o.suffix())
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h != "" {
				h = " (pid " + h + ")"
			}
			return nil, fmt.Errorf("another kwl deploy is running%s: %s is locked", h, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// PidFile is the file where a deploy waiting for confirmation writes its
// pid, for `kwl deploy --confirm-now` to signal it (SIGUSR1).
func PidFile(o Options) string {
	return filepath.Join(o.stateDir(), "confirm"+o.suffix()+".pid")
}

// ConfirmNow confirms the deploy waiting in the same namespace: it sends
// SIGUSR1 to the pid in PidFile.
func ConfirmNow(o Options) error {
	b, err := os.ReadFile(PidFile(o))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no kwl deploy is waiting for confirmation (%s does not exist)", PidFile(o))
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s: bad pid %q", PidFile(o), strings.TrimSpace(string(b)))
	}
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		return fmt.Errorf("signal deploy process %d: %w", pid, err)
	}
	return nil
}

func tableOf(o *Options, rs *nft.Ruleset) (*nft.Ruleset, error) {
	if rs == nil || rs.Table == nil {
		return nil, errors.New("empty ruleset")
	}
	if o.Table == "" || o.Table == rs.Table.Name {
		return rs, nil
	}
	t := *rs.Table
	t.Name = o.Table
	return &nft.Ruleset{Table: &t}, nil
}

// Apply loads rs into the kernel, replacing kwl's table in one
// transaction and carrying its state over; see the package comment.
func Apply(ctx context.Context, o Options, rs *nft.Ruleset) (*Result, error) {
	rs, err := tableOf(&o, rs)
	if err != nil {
		return nil, err
	}
	n, err := rs.Netlink()
	if err != nil {
		return nil, err
	}
	if err := check(); err != nil {
		return nil, err
	}
	release, err := lock(&o)
	if err != nil {
		return nil, err
	}
	defer release()
	t, err := openTarget(o.NetNS)
	if err != nil {
		return nil, err
	}
	defer t.close()
	// Chains and rules are needed to show a diff or to restore the table.
	old, err := t.readLive(n.Table.Family, n.Table.Name, o.DryRun || o.Confirm > 0)
	if err != nil {
		return nil, err
	}
	res := &Result{Replaced: old != nil, Kept: map[string]int{}, Table: familyString(n.Table.Family) + " " + n.Table.Name}
	if o.DryRun {
		res.Changes, err = diff(old, n)
		return res, err
	}
	b := nft.NewBatch()
	if err := replaceTable(b, n.Table); err != nil {
		return nil, err
	}
	if err := b.AddNetlink(n); err != nil {
		return nil, err
	}
	if err := carryState(b, n, old, res.Kept); err != nil {
		return nil, err
	}
	if o.inject != nil {
		o.inject(b)
	}
	res.Messages = len(b.Msgs)
	if err := t.send(b); err != nil {
		return res, err
	}
	if o.Confirm <= 0 {
		return res, nil
	}
	return res, awaitConfirm(ctx, &o, t, n.Table, old, res)
}

// limited returns the sets that a dynset of n updates with a per-element
// limit: their elements must carry that limit, which cannot be read back
// with its state.
func limited(n *nft.Netlink) map[string]bool {
	m := map[string]bool{}
	for _, r := range n.Rules {
		for _, e := range r.From.Exprs {
			if d, ok := e.(*nft.Dynset); ok && d.Limit != nil {
				m[d.Set] = true
			}
		}
	}
	return m
}

// carryState adds to b the live elements of old's sets that n still has:
// same name, same key type, no per-element limit.
func carryState(b *nft.Batch, n *nft.Netlink, old *live, kept map[string]int) error {
	if old == nil {
		return nil
	}
	lim := limited(n)
	now := time.Now()
	for _, ns := range n.Sets {
		s := old.set(ns.Set.Name)
		if s == nil || s.anonymous() || lim[ns.Set.Name] {
			continue
		}
		if s.keyType != ns.Set.KeyType.GetNFTMagic() || s.keyLen != ns.Set.KeyType.Bytes {
			continue
		}
		limit := int(ns.Set.Size)
		if limit == 0 {
			limit = 65535 // nft_dynset: an unsized set is bound with size 0xffff
		}
		var elems [][]netlink.Attribute
		for _, e := range s.elems {
			if e.hasExpr || len(elems) >= limit {
				continue
			}
			if a, ok := e.carried(s.timeout, now.Sub(old.taken)); ok {
				elems = append(elems, a)
			}
		}
		ms, err := elemMsgs(n.Table.Family, n.Table.Name, ns.Set.Name, elems)
		if err != nil {
			return err
		}
		for _, m := range ms {
			b.Msgs = append(b.Msgs, m)
			b.Notes = append(b.Notes, nft.Note{What: "carry over elements of set " + ns.Set.Name, Origin: ns.From.Origin})
		}
		kept[ns.Set.Name] = len(elems)
	}
	return nil
}

// awaitConfirm waits for a confirmation; without one in time, or when
// ctx ends (the terminal hung up), it restores old with its state.
func awaitConfirm(ctx context.Context, o *Options, t *target, tab *nftables.Table, old *live, res *Result) error {
	pidf := PidFile(*o)
	if err := os.WriteFile(pidf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file: %w (rolling back)", errors.Join(err, rollback(o, t, tab, old, res)))
	}
	defer os.Remove(pidf)
	o.logf("kwl: new ruleset applied; confirm within %v (Enter on this terminal, `kwl deploy --confirm-now`, or SIGUSR1 to pid %d), or it is rolled back\n", o.Confirm, os.Getpid())
	timer := time.NewTimer(o.Confirm)
	defer timer.Stop()
	select {
	case <-o.Confirmed:
		res.Confirmed = true
		o.logf("kwl: confirmed; the new ruleset stays\n")
		return nil
	case <-timer.C:
		o.logf("kwl: no confirmation within %v: restoring the previous ruleset\n", o.Confirm)
	case <-ctx.Done():
		o.logf("kwl: %v before confirmation: restoring the previous ruleset\n", context.Cause(ctx))
	}
	if err := rollback(o, t, tab, old, res); err != nil {
		return fmt.Errorf("rollback failed, the new ruleset is still loaded: %w", err)
	}
	return ErrRolledBack
}

// ErrRolledBack is returned by Apply when the confirmation did not come
// and the previous ruleset was restored.
var ErrRolledBack = errors.New("not confirmed: the previous ruleset was restored")

func rollback(o *Options, t *target, tab *nftables.Table, old *live, res *Result) error {
	b := nft.NewBatch()
	if old == nil {
		// There was no kwl table: going back means having none.
		if err := replaceTable(b, tab); err != nil {
			return err
		}
	} else {
		cur, err := t.readLive(tab.Family, tab.Name, false)
		if err != nil {
			return err
		}
		if err := restoreBatch(b, old, cur); err != nil {
			return err
		}
	}
	if err := t.send(b); err != nil {
		return err
	}
	res.RolledBack = true
	return nil
}

// Undeploy deletes kwl's table (and nothing else). It reports whether
// there was one.
func Undeploy(ctx context.Context, o Options) (bool, error) {
	if err := check(); err != nil {
		return false, err
	}
	release, err := lock(&o)
	if err != nil {
		return false, err
	}
	defer release()
	t, err := openTarget(o.NetNS)
	if err != nil {
		return false, err
	}
	defer t.close()
	name := o.Table
	if name == "" {
		name = DefaultTable
	}
	tab := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	l, err := t.readLive(tab.Family, name, false)
	if err != nil || l == nil {
		return false, err
	}
	b := nft.NewBatch()
	if err := b.Add(nft.Note{What: "delete table inet " + name}, func(c *nftables.Conn) error { c.DelTable(tab); return nil }); err != nil {
		return false, err
	}
	return true, t.send(b)
}
