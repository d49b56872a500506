//go:build linux

// Package deploy loads a kwl ruleset into the running kernel over
// netlink (no nft binary), removes it, and reports what is loaded. It
// builds on Linux only; the ruleset's netlink encoding, the messages of
// a batch, is package deploy/nftnl.
//
// kwl owns exactly one nftables table (inet kwl unless told otherwise)
// and never changes another. The table it creates carries a mark in its
// user data (NFTA_TABLE_USERDATA; nft lists it as the comment "kwl
// policy sha256:..."), with the services the policy guards (Mark). Apply
// replaces, and Undeploy deletes, only a table with that mark, whatever
// Options.Table names, unless Options.ForceForeign says otherwise; a
// ForeignTableError leaves the table as it was. Every dump deploy reads
// is filtered by table name in each message, since the kernel's chain
// dump lists the chains of every table of the family.
//
// A deploy is one nfnetlink batch, one transaction for the kernel: it
// deletes the old table by the handle it was read with (so that a table
// made meanwhile under that name is never deleted in its place), creates
// the new one with kwl's mark (failing if one of that name exists), and
// builds its sets, chains and rules, with the live elements of the old
// table's sets that the new ruleset still has (doors, bans), each with
// the life it had left. The kernel applies all of it or none of it; when
// it refuses, the error names the statement whose rule it refused.
//
// A redeploy that would leave a service the live table guards with no
// guard (Options.Guarded against the live mark) is refused with an
// UnguardError unless Options.Force is set.
//
// Conntrack is independent of the table, so established connections go
// on being accepted by the new ruleset's established rule.
//
// Deploys and undeploys of one network namespace exclude each other
// through one lock, RunDir/netns-DEV-INO.lock, named after the device and
// inode of the namespace, whatever name it is given.
//
// With a confirmation delay (Options.Confirm), Apply starts a watchdog
// before it loads the new table: the running binary again, in a session
// of its own, which calls RunWatchdog. The watchdog holds the lock, the
// namespace and the previous table (read raw, so that it can be sent
// back byte for byte, in a file of the state directory), and listens on
// RunDir/netns-DEV-INO.sock. Unless confirmed through that socket
// (ConfirmNow, or Options.Confirmed of the deploying process) within the
// delay, it restores the previous table, state included, and only that
// table: whether or not the deploying process is still alive.
//
// Before a deploy touches the kernel, Vet refuses a policy that would
// expose what it means to guard (no statement, failing tests); PolicyID
// and Guarded fill the mark. A deploy that loaded is kept by RecordDeploy
// in a record (package deploy/record), which Restore loads again at boot,
// or, when it cannot, the record's fail-closed policy.
//
// The iptables backend (ApplyIptables, UndeployIptables, IptablesStatus,
// SaveIptables, RestoreIptables) owns the chains named kwl-* and the
// jumps into them, found with iptables-save in every table of both
// families; see iptables.go for how a deploy replaces them.
package deploy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
	"kwl.dev/kwl/secret"
)

// DefaultTable is the name of the table kwl owns.
const DefaultTable = "kwl"

// DefaultStateDir holds kwl's state: the previous table while a deploy
// waits for confirmation, and the watchdog's log.
const DefaultStateDir = "/run/kwl"

// Options says where and how to deploy.
type Options struct {
	// NetNS names the network namespace to work in (a name under
	// /run/netns, or a path); "" is the namespace of the process.
	NetNS string
	// Table overrides the ruleset's table name (inet kwl).
	Table string
	// StateDir holds the previous table while a deploy waits for
	// confirmation, and the watchdog's log; DefaultStateDir when empty.
	// The lock and the confirmation socket are in RunDir whatever it
	// says.
	StateDir string
	// DryRun computes the changes and changes nothing.
	DryRun bool
	// Confirm, when positive, hands the previous table to a watchdog
	// that restores it, state included, unless confirmation arrives
	// within that delay (Confirmed, or ConfirmNow from anywhere).
	Confirm   time.Duration
	Confirmed <-chan struct{}
	// Policy identifies the policy (a hash of its source), written into
	// the table's mark.
	Policy string
	// Guarded lists the services the policy guards with knocks. A
	// redeploy that leaves a service the live table guards unguarded is
	// refused unless Force is set.
	Guarded []string
	Force   bool
	// ForceForeign lets deploy replace, and undeploy delete, a table of
	// the given name that kwl did not create (it has no kwl mark).
	ForceForeign bool
	// Log receives progress messages (waiting, rolled back); nil: none.
	Log io.Writer
	// Previous, with its Policy, is the ruleset the live table was
	// loaded from, when the caller knows it (kwl restore's record): a
	// dry run shows the rules it removes in nft syntax, after their
	// statement's file:line, when the live table's mark names
	// PreviousPolicy.
	Previous       *nft.Ruleset
	PreviousPolicy string

	// Secret reads the secret of a secret knock, whose tokens the
	// ruleset's token sets are loaded with; nil: secret.Read.
	Secret func(path string) ([]byte, error)
	// Tokens is how far ahead the token sets hold tokens (at most
	// MaxTokens); 0: DefaultTokens.
	Tokens time.Duration
	// Expect, when set, is the policy (Policy) the live table must have
	// been loaded from: Apply changes nothing otherwise (Renew).
	Expect string

	// inject, for tests, adds messages to the batch after the ruleset's.
	inject func(b *nftnl.Batch)
	// now, for tests, is the time tokens are loaded at; nil: time.Now.
	now func() time.Time
	// afterBoot is set by Restore: the kernel's state is lost, and token
	// sets start after now's window (fillTokenSets).
	afterBoot bool
}

func (o *Options) stateDir() string {
	if o.StateDir != "" {
		return o.StateDir
	}
	return DefaultStateDir
}

// table is the name of kwl's table: o.Table, or DefaultTable.
func (o *Options) table() string {
	if o.Table != "" {
		return o.Table
	}
	return DefaultTable
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format, args...)
	}
}

// suffix distinguishes the files of one namespace in the state directory.
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

// ConfirmNow confirms the deploy waiting for confirmation in o's
// network namespace, through its watchdog's socket. Run from a new
// session, it also proves that the new ruleset lets new connections in.
func ConfirmNow(o Options) error {
	key, err := nsKey(o.NetNS)
	if err != nil {
		return err
	}
	p := socketPath(key)
	c, err := net.DialTimeout("unix", p, 5*time.Second)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("no kwl deploy is waiting for confirmation in network namespace %s (nothing listens on %s)", displayNS(o.NetNS), p)
	}
	if err != nil {
		return fmt.Errorf("confirmation socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "confirm\n"); err != nil {
		return fmt.Errorf("confirmation socket %s: %w", p, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("confirmation socket %s: no answer: %w", p, err)
	}
	switch line = strings.TrimSpace(line); line {
	case "confirmed":
		return nil
	case "rolled back":
		return errors.New("too late: the deploy was rolled back")
	}
	return fmt.Errorf("the deploy was not confirmed: %s", line)
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
	n, err := nftnl.Convert(rs)
	if err != nil {
		return nil, err
	}
	mark := Mark{Policy: o.Policy, Guarded: slices.Sorted(slices.Values(o.Guarded))}
	ud, err := mark.encode()
	if err != nil {
		return nil, err
	}
	if err := check(); err != nil {
		return nil, err
	}
	lk, err := lockNS(&o)
	if err != nil {
		return nil, err
	}
	defer lk.end()
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
	tabName := nftnl.FamilyName(n.Table.Family) + " " + n.Table.Name
	if old != nil && old.mark == nil && !o.ForceForeign {
		return nil, &ForeignTableError{Table: tabName, What: "replace"}
	}
	if old != nil && !o.Force {
		if u := unguarded(old.mark, mark.Guarded); len(u) > 0 {
			return nil, &UnguardError{Table: tabName, Services: u}
		}
	}
	if o.Expect != "" && (old == nil || old.mark == nil || old.mark.Policy != o.Expect) {
		return nil, fmt.Errorf("%s was not loaded from the recorded policy: nothing to renew (deploy the policy again)", tabName)
	}
	res := &Result{Replaced: old != nil, Kept: map[string]int{}, Table: tabName}
	noCarry, err := o.fillTokens(&rs, &n, old)
	if err != nil {
		return nil, err
	}
	if o.DryRun {
		var prev *nftnl.Ruleset
		if o.Previous != nil && old != nil && old.mark != nil && old.mark.Policy == o.PreviousPolicy {
			if p, err := tableOf(&o, o.Previous); err == nil {
				prev, _ = nftnl.Convert(p)
			}
		}
		res.Changes, err = diff(old, n, prev)
		return res, err
	}
	b := nftnl.NewBatch()
	if old != nil {
		m, err := delTableMsg(byte(n.Table.Family), n.Table.Name, old.info.handle)
		if err != nil {
			return nil, err
		}
		b.Msgs = append(b.Msgs, m)
		b.Notes = append(b.Notes, nftnl.Note{What: "delete table " + tabName + " (the one read, by its handle)"})
	}
	first := len(b.Msgs)
	if err := b.AddRuleset(n); err != nil {
		return nil, err
	}
	// The table's creation carries kwl's mark, and fails if a table of
	// that name was made since it was read.
	if b.Msgs[first], err = withUserdata(b.Msgs[first], ud); err != nil {
		return nil, err
	}
	b.Msgs[first].Header.Flags |= netlink.Excl
	if err := carryState(b, n, old, res.Kept, noCarry); err != nil {
		return nil, err
	}
	if o.inject != nil {
		o.inject(b)
	}
	res.Messages = len(b.Msgs)
	var wd *watchdog
	if o.Confirm > 0 {
		// The watchdog runs before the new table is loaded: whatever
		// happens to this process from here on, the table goes back.
		wd, err = startWatchdog(&o, lk, t, &watchJob{
			Family: n.Table.Family, Table: n.Table.Name, NetNS: o.NetNS, HasNS: t.nsfd >= 0,
			Confirm: o.Confirm, Started: time.Now(), Socket: socketPath(lk.key), Old: old.snapshot(),
		})
		if err != nil {
			return nil, err
		}
		defer wd.conn.Close()
	}
	if err := t.send(b); err != nil {
		if wd != nil {
			var be *BatchError
			cmd := "rollback" // the batch may or may not have been applied
			if errors.As(err, &be) || errors.Is(err, ErrPermission) {
				cmd = "abort" // nothing of it was
			}
			if ans, werr := wd.say(cmd); werr != nil || (ans != "aborted" && ans != "rolled back") {
				err = fmt.Errorf("%w; the watchdog answered %q %v", err, ans, werr)
			}
		}
		return res, err
	}
	if o.Confirm <= 0 {
		return res, nil
	}
	return res, awaitConfirm(ctx, &o, t, wd, n.Table, old, res)
}

// limited returns the sets that a dynset of n updates with a per-element
// limit or connection count: their elements must carry it, and it cannot
// be read back with its state.
func limited(n *nftnl.Ruleset) map[string]bool {
	m := map[string]bool{}
	for _, r := range n.Rules {
		for _, e := range r.From.Exprs {
			if d, ok := e.(*nft.Dynset); ok && (d.Limit != nil || d.Connlimit != nil) {
				m[d.Set] = true
			}
		}
	}
	return m
}

// fillTokens fills the token sets of *rs (fillTokenSets) and converts it
// again into *n when it has any; it returns the sets whose live elements
// must not be carried over.
func (o *Options) fillTokens(rs **nft.Ruleset, n **nftnl.Ruleset, old *live) (map[string]bool, error) {
	ahead := o.Tokens
	switch {
	case ahead == 0:
		ahead = DefaultTokens
	case ahead < 0 || ahead > MaxTokens:
		return nil, fmt.Errorf("tokens for %v: load them for a positive time up to %v", ahead, MaxTokens)
	}
	read, now := o.Secret, time.Now
	if read == nil {
		read = secret.Read
	}
	if o.now != nil {
		now = o.now
	}
	filled, noCarry, err := fillTokenSets(*rs, old, now(), ahead, o.afterBoot, read)
	if err != nil || filled == *rs {
		return nil, err
	}
	conv, err := nftnl.Convert(filled)
	if err != nil {
		return nil, err
	}
	*rs, *n = filled, conv
	return noCarry, nil
}

// carryState adds to b the live elements of old's sets that n still has:
// same name, same key type, no per-element limit, and not in noCarry.
func carryState(b *nftnl.Batch, n *nftnl.Ruleset, old *live, kept map[string]int, noCarry map[string]bool) error {
	if old == nil {
		return nil
	}
	lim := limited(n)
	now := time.Now()
	for _, ns := range n.Sets {
		s := old.set(ns.Set.Name)
		if s == nil || s.anonymous() || lim[ns.Set.Name] || noCarry[ns.Set.Name] {
			continue
		}
		if s.keyType != ns.Set.KeyType.GetNFTMagic() || s.keyLen != ns.Set.KeyType.Bytes {
			continue
		}
		limit := int(ns.Set.Size)
		if limit == 0 {
			limit = nft.DefaultSetSize
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
			b.Notes = append(b.Notes, nftnl.Note{What: "carry over elements of set " + ns.Set.Name, Origin: ns.From.Origin})
		}
		kept[ns.Set.Name] = len(elems)
	}
	return nil
}

// ConfirmCommand is the command that confirms a deploy in namespace
// netns.
func ConfirmCommand(netns string) string {
	c := "kwl deploy --confirm-now"
	if netns != "" {
		c += " --netns " + netns
	}
	return c
}

// awaitConfirm waits for the watchdog's outcome: confirmed (through
// o.Confirmed or its socket), or rolled back at the deadline or when ctx
// ends (the terminal hung up). Should the watchdog vanish, this process
// rolls back itself.
func awaitConfirm(ctx context.Context, o *Options, t *target, wd *watchdog, tab *nftables.Table, old *live, res *Result) error {
	ans := confirmThrough(ctx, o, wd, "table "+res.Table)
	var err error
	res.Confirmed, res.RolledBack, err = settle(o, ans, func() error { return rollback(t, tab.Family, tab.Name, old) })
	return err
}

// settle turns the watchdog's last word (confirmThrough) into the
// outcome of a deploy: confirmed, or rolled back (ErrRolledBack), or a
// failed rollback. When the watchdog is gone, restore rolls back from
// this process.
func settle(o *Options, ans string, restore func() error) (confirmed, rolledBack bool, err error) {
	switch {
	case ans == "confirmed":
		o.logf("kwl: confirmed; the new ruleset stays\n")
		return true, false, nil
	case ans == "rolled back":
		o.logf("kwl: the previous ruleset is restored\n")
		return false, true, ErrRolledBack
	case strings.HasPrefix(ans, "failed: "):
		return false, false, fmt.Errorf("rollback failed, the new ruleset is still loaded: %s", strings.TrimPrefix(ans, "failed: "))
	}
	o.logf("kwl: the watchdog is gone (%s): restoring the previous ruleset\n", ans)
	if err := restore(); err != nil {
		return false, false, fmt.Errorf("rollback failed, the new ruleset is still loaded: %w", err)
	}
	return false, true, ErrRolledBack
}

// confirmThrough arms the watchdog of a deploy whose new ruleset (in
// where) is loaded, tells the user how to confirm it, and waits for the
// end of the window. It returns the watchdog's last word: "confirmed",
// "rolled back" or "failed: REASON", or "lost: REASON" when the watchdog
// is gone and the caller must roll back itself.
func confirmThrough(ctx context.Context, o *Options, wd *watchdog, where string) string {
	if ans, err := wd.say("applied"); err != nil || ans != "armed" {
		return fmt.Sprintf("lost: the watchdog does not answer (%q %v)", ans, err)
	}
	o.logf("kwl: new ruleset loaded in %s; it is rolled back in %v unless confirmed.\n", where, o.Confirm)
	o.logf("kwl: confirm from a NEW ssh session, which proves that new connections get in:\n")
	o.logf("kwl:     %s\n", ConfirmCommand(o.NetNS))
	o.logf("kwl: this session proves nothing: it lives on conntrack whatever the new ruleset does. Enter here confirms it anyway;\n")
	o.logf("kwl: a hang-up or Ctrl-C rolls back now, and killing this process changes nothing: the watchdog rolls back at the deadline.\n")
	outcome := make(chan string, 1)
	go func() {
		a, err := wd.answer()
		if err != nil {
			a = "lost: " + err.Error()
		}
		outcome <- a
	}()
	select {
	case <-o.Confirmed:
		fmt.Fprintf(wd.conn, "confirm\n")
	case <-ctx.Done():
		o.logf("kwl: %v before confirmation: restoring the previous ruleset\n", context.Cause(ctx))
		fmt.Fprintf(wd.conn, "rollback\n")
	case ans := <-outcome:
		return ans
	}
	return <-outcome
}

// ErrRolledBack is returned by Apply when the confirmation did not come
// and the previous ruleset was restored.
var ErrRolledBack = errors.New("not confirmed: the previous ruleset was restored")

// rollback puts table family/name back as old was (deleting it when
// old is nil), with the live state of its sets. It touches that table
// only, and refuses when the table there now is not kwl's.
func rollback(t *target, family nftables.TableFamily, name string, old *live) error {
	cur, err := t.readLive(family, name, false)
	if err != nil {
		return err
	}
	tabName := nftnl.FamilyName(family) + " " + name
	if cur != nil && cur.mark == nil {
		return fmt.Errorf("table %s was replaced meanwhile by one kwl did not create; it is left as it is", tabName)
	}
	b := nftnl.NewBatch()
	if cur != nil {
		m, err := delTableMsg(byte(family), name, cur.info.handle)
		if err != nil {
			return err
		}
		b.Msgs = append(b.Msgs, m)
		b.Notes = append(b.Notes, nftnl.Note{What: "delete table " + tabName})
	}
	if old != nil {
		if err := restoreBatch(b, old, cur); err != nil {
			return err
		}
	}
	return t.send(b)
}

// Undeploy deletes kwl's table (and nothing else). It reports whether
// there was one. A table of that name that kwl did not create is left
// alone (a ForeignTableError) unless o.ForceForeign is set.
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
	name := o.table()
	l, err := t.readLive(nftables.TableFamilyINet, name, false)
	if err != nil || l == nil {
		return false, err
	}
	if l.mark == nil && !o.ForceForeign {
		return false, &ForeignTableError{Table: "inet " + name, What: "delete"}
	}
	m, err := delTableMsg(byte(nftables.TableFamilyINet), name, l.info.handle)
	if err != nil {
		return false, err
	}
	b := nftnl.NewBatch()
	b.Msgs = append(b.Msgs, m)
	b.Notes = append(b.Notes, nftnl.Note{What: "delete table inet " + name})
	return true, t.send(b)
}
