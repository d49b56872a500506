//go:build linux

package deploy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/secret"
)

func TestTokenComment(t *testing.T) {
	c := tokenComment("tokens of the secret knock of line 4", 59012345, "0a1b2c3d4e5f6a7b")
	base, last, id, ok := splitTokenComment(c)
	if !ok || base != "tokens of the secret knock of line 4" || last != 59012345 || id != "0a1b2c3d4e5f6a7b" {
		t.Errorf("split %q: %q %d %q %v", c, base, last, id, ok)
	}
	for _, c := range []string{"sources with ssh open, line 1", "x; tokens through window , key a", "x; tokens through window 12", "x; tokens through window 12, key "} {
		if base, _, _, ok := splitTokenComment(c); ok || base != c {
			t.Errorf("split %q: ok %v, base %q", c, ok, base)
		}
	}
}

// TestFillTokensAfterBoot: a restore (after a boot) loads no token of
// the current window or the one before, which may have been used before
// the boot; a deploy does, and a restore onto a live set carries it.
func TestFillTokensAfterBoot(t *testing.T) {
	pol := irtest.Load(t, `knock udp/62201 secret "/k" opens ssh for 60s`)
	rs, _ := nft.Lower(pol)
	key := secret.StandIn("/k")
	read := func(string) ([]byte, error) { return key, nil }
	now := time.Date(2026, 12, 1, 10, 0, 10, 0, time.UTC)
	w := secret.Window(now, 30*time.Second)
	first := func(boot bool) []byte {
		out, _, err := fillTokenSets(rs, nil, now, time.Hour, boot, read)
		if err != nil {
			t.Fatal(err)
		}
		es := out.Table.Sets[1].Elements
		if out.Table.Sets[1].Tokens == nil || len(es) == 0 {
			t.Fatalf("no token set: %+v", out.Table.Sets)
		}
		return es[0].Key[:]
	}
	if tok := secret.Token(key, w-1); string(first(false)) != string(tok[:]) {
		t.Error("a deploy does not start at the window before now's")
	}
	if tok := secret.Token(key, w+1); string(first(true)) != string(tok[:]) {
		t.Error("a restore after a boot does not start at the window after now's")
	}
}

// TestFillTokensOneSecretEach: two secret knocks whose files hold the
// same secret are refused, since a token of one would open the other.
func TestFillTokensOneSecretEach(t *testing.T) {
	pol := irtest.Load(t, "knock udp/62201 secret \"/a\" opens ssh for 60s\nknock udp/62202 secret \"/b\" opens http for 60s")
	rs, _ := nft.Lower(pol)
	same := func(string) ([]byte, error) { return []byte("0123456789abcdef"), nil }
	if _, _, err := fillTokenSets(rs, nil, time.Now(), time.Hour, false, same); err == nil || !strings.Contains(err.Error(), "is that of the secret knock at p.kwl:1:1") {
		t.Errorf("one secret in two files: %v", err)
	}
	other := func(p string) ([]byte, error) { return []byte("0123456789abcdef" + p), nil }
	if _, _, err := fillTokenSets(rs, nil, time.Now(), time.Hour, false, other); err != nil {
		t.Error(err)
	}
}

// tokenElems returns the tokens the live set holds, in hex without
// leading zeros, as nft lists them.
func tokenElems(t *testing.T, ns *netns.NS) map[string]bool {
	t.Helper()
	out := nftList(t, ns, "set", "inet", "kwl", "tokens_ssh")
	got := map[string]bool{}
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "0x") {
			got["0x"+strings.TrimLeft(strings.TrimRight(f, ",")[2:], "0")] = true
		}
	}
	return got
}

func tokenHex(key []byte, w int64) string {
	tok := secret.Token(key, w)
	return "0x" + strings.TrimLeft(fmt.Sprintf("%x", tok[:]), "0")
}

// TestTokensRenew deploys a secret knock, uses a token up, and deploys
// again an hour later: the used token stays gone, the others are kept,
// the new hour's tokens are added; a new secret replaces them all.
func TestTokensRenew(t *testing.T) {
	ns := newNS(t, "tok")
	pol := irtest.Load(t, `knock udp/62201 secret "/etc/kwl/ssh.key" opens ssh for 60s`)
	rs, diags := nft.Lower(pol)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	t0 := time.Now().Truncate(30 * time.Second).Add(10 * time.Second)
	o := opts(t, ns)
	o.Tokens = time.Hour
	o.Secret = func(path string) ([]byte, error) {
		if path != "/etc/kwl/ssh.key" {
			t.Errorf("secret read from %s", path)
		}
		return key, nil
	}
	o.now = func() time.Time { return t0 }
	mustDeploy(t, o, rs)
	w0 := secret.Window(t0, 30*time.Second)
	got := tokenElems(t, ns)
	// From the window before now's to the one an hour later: 122.
	if len(got) != 122 || !got[tokenHex(key, w0-1)] || !got[tokenHex(key, w0+120)] || got[tokenHex(key, w0-2)] || got[tokenHex(key, w0+121)] {
		t.Fatalf("%d tokens loaded, want windows %d to %d", len(got), w0-1, w0+120)
	}
	if out := nftList(t, ns, "set", "inet", "kwl", "tokens_ssh"); !strings.Contains(out, fmt.Sprintf("tokens through window %d, key %s", w0+120, secret.ID(key))) {
		t.Errorf("the set does not record what it holds:\n%s", out)
	}
	// kwl status counts the tokens and shows none.
	st, err := Status(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	st.Write(&b)
	want := fmt.Sprintf("122 token(s), not shown, through %s", secret.Start(w0+121, 30*time.Second).Format(time.RFC3339))
	if !strings.Contains(b.String(), want) || strings.Contains(b.String(), fmt.Sprintf("%x", secret.Token(key, w0))) {
		t.Errorf("kwl status, want %q and no token:\n%s", want, b.String())
	}

	// The token of the last window loaded is used up, as the knock rule
	// would: a client whose clock is an hour ahead.
	must(t, ns, "nft", "delete", "element", "inet", "kwl", "tokens_ssh", "{", tokenHex(key, w0+120), "}")

	// An hour later, a renewal.
	t1 := t0.Add(time.Hour)
	o.now = func() time.Time { return t1 }
	res := mustDeploy(t, o, rs)
	got = tokenElems(t, ns)
	if got[tokenHex(key, w0+120)] {
		t.Error("a renewal loaded a used token again")
	}
	if !got[tokenHex(key, w0+6)] || !got[tokenHex(key, w0+119)] || !got[tokenHex(key, w0+121)] || !got[tokenHex(key, w0+240)] || got[tokenHex(key, w0+241)] {
		t.Errorf("after the renewal: %d tokens, want those of windows %d to %d but %d", len(got), w0-1, w0+240, w0+120)
	}
	if res.Kept["tokens_ssh"] != 121 {
		t.Errorf("%d live tokens carried over, want 121", res.Kept["tokens_ssh"])
	}

	// A new secret: the old tokens go, the new ones come from now.
	key2 := []byte("another secret of 32 bytes, too.")
	o.Secret = func(string) ([]byte, error) { return key2, nil }
	mustDeploy(t, o, rs)
	got = tokenElems(t, ns)
	w1 := secret.Window(t1, 30*time.Second)
	if got[tokenHex(key, w0+6)] || !got[tokenHex(key2, w1-1)] || !got[tokenHex(key2, w1+120)] || len(got) != 122 {
		t.Errorf("after a new secret: %d tokens; the old secret's must be gone and windows %d to %d of the new one loaded", len(got), w1-1, w1+120)
	}

	// A secret that cannot be read changes nothing, and names the statement.
	o.Secret = func(path string) ([]byte, error) { return secret.Read(t.TempDir() + "/missing") }
	before := masked(t, ns, "table", "inet", "kwl")
	if _, err := Apply(t.Context(), o, rs); err == nil || !strings.Contains(err.Error(), "p.kwl:1:") {
		t.Errorf("deploy with an unreadable secret: %v, want an error at the statement", err)
	}
	if after := masked(t, ns, "table", "inet", "kwl"); after != before {
		t.Error("a failed deploy changed the table")
	}

	// A week of tokens, 20,162: in messages of their own size, since one
	// attribute cannot hold them (a day's failed a third of the time).
	o.Secret = func(string) ([]byte, error) { return key2, nil }
	o.Tokens = MaxTokens
	mustDeploy(t, o, rs)
	if got = tokenElems(t, ns); len(got) < 20162 {
		t.Errorf("a week of tokens: %d loaded, want 20162 and the carried ones", len(got))
	}
}

// TestRollbackKeepsTokenRecord: a rollback to the table before a renewal
// keeps the renewal's record of the windows loaded, and the tokens; so a
// token of those windows used meanwhile is not loaded again by the next
// renewal.
func TestRollbackKeepsTokenRecord(t *testing.T) {
	ns := newNS(t, "tokrb")
	pol := irtest.Load(t, `knock udp/62201 secret "/etc/kwl/ssh.key" opens ssh for 60s`)
	rs, _ := nft.Lower(pol)
	key := []byte("0123456789abcdef0123456789abcdef")
	t0 := time.Now().Truncate(30 * time.Second).Add(10 * time.Second)
	o := opts(t, ns)
	o.Tokens = time.Hour
	o.Secret = func(string) ([]byte, error) { return key, nil }
	o.now = func() time.Time { return t0 }
	mustDeploy(t, o, rs)
	tg, err := openTarget(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	n, _ := nftnl.Convert(rs)
	old, err := tg.readLive(n.Table.Family, n.Table.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	// A renewal an hour later, whose window w0+150 is then used.
	w0 := secret.Window(t0, 30*time.Second)
	o.now = func() time.Time { return t0.Add(time.Hour) }
	mustDeploy(t, o, rs)
	must(t, ns, "nft", "delete", "element", "inet", "kwl", "tokens_ssh", "{", tokenHex(key, w0+150), "}")
	if err := rollback(tg, n.Table.Family, n.Table.Name, old); err != nil {
		t.Fatal(err)
	}
	if out := nftList(t, ns, "set", "inet", "kwl", "tokens_ssh"); !strings.Contains(out, fmt.Sprintf("through window %d,", w0+240)) {
		t.Errorf("the rollback lost the renewal's record of its windows:\n%.400s", out)
	}
	mustDeploy(t, o, rs)
	if got := tokenElems(t, ns); got[tokenHex(key, w0+150)] || !got[tokenHex(key, w0+151)] {
		t.Error("a renewal after the rollback loaded a used token again, or lost the others")
	}
}
