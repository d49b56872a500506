//go:build linux

package nftnl

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/internal/netns"
)

func needRoot(t *testing.T, tools ...string) { t.Helper(); netns.NeedRoot(t, tools...) }

func newNS(t *testing.T) string { t.Helper(); return netns.ForTest(t, "kwlc-nft").Name }

// sendBatch sends the messages of b to the namespace ns as one nfnetlink
// batch and waits for the acknowledgement of its last message. It is the
// bare minimum of what package deploy does, so that this package's tests
// need nothing above it.
func sendBatch(ns string, b *Batch) error {
	fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		return err
	}
	defer c.Close()
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	msgs := []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request, Sequence: 1}, Data: hdr}}
	for i, m := range b.Msgs {
		m.Header.Sequence = uint32(2 + i)
		m.Header.Flags &^= netlink.Acknowledge | netlink.Echo
		if i == len(b.Msgs)-1 {
			m.Header.Flags |= netlink.Acknowledge
		}
		msgs = append(msgs, m)
	}
	msgs = append(msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request, Sequence: uint32(2 + len(b.Msgs))}, Data: hdr})
	if _, err := c.SendMessages(msgs); err != nil {
		return err
	}
	// The first reply is the acknowledgement of the last message, or
	// the error of the first message the kernel refused
	// (nfnetlink_rcv_batch).
	_, err = c.Receive()
	return err
}

func nftIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	handleRE = regexp.MustCompile(` # handle \d+`)
	anonRE   = regexp.MustCompile(`__set\d+`)
)

// sameBytecode normalizes nft --debug=netlink output: handles, anonymous
// set numbers, and the order of a hash set's elements (it follows each
// set's hash seed).
func sameBytecode(s string) string {
	var out, run []string
	flush := func() {
		sort.Strings(run)
		out = append(out, run...)
		run = nil
	}
	for _, l := range strings.Split(s, "\n") {
		l = anonRE.ReplaceAllString(handleRE.ReplaceAllString(l, ""), "__set")
		if strings.HasPrefix(strings.TrimSpace(l), "element ") {
			run = append(run, l)
			continue
		}
		flush()
		out = append(out, l)
	}
	flush()
	return strings.Join(out, "\n")
}

// TestNetlinkMatchesGolden loads every golden file with nft -f into one
// namespace and the ruleset it was rendered from (an example through
// lang.Load and Lower, or the hand-built IR) over netlink into another,
// and compares what nft lists, text and bytecode.
func TestNetlinkMatchesGolden(t *testing.T) {
	needRoot(t, "nft")
	pols := irtest.Goldens(t, "../../examples", nft.Name)
	files, _ := filepath.Glob("../../compile/nft/testdata/*.nft")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	if len(files) != len(pols) {
		t.Errorf("%d golden files for %d policies", len(files), len(pols))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".nft")
		t.Run(name, func(t *testing.T) {
			p, ok := pols[name]
			if !ok {
				t.Fatalf("%s: no policy renders it", f)
			}
			rs, diags := nft.Lower(p)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			golden, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if mustRender(t, rs) != string(golden) {
				t.Fatalf("%s is not Render() of its policy (TestGolden says more)", f)
			}
			n, err := Convert(rs)
			if err != nil {
				t.Fatal(err)
			}
			b := NewBatch()
			if err := b.AddRuleset(n); err != nil {
				t.Fatal(err)
			}
			nl, txt := newNS(t), newNS(t)
			if err := sendBatch(nl, b); err != nil {
				t.Fatalf("netlink load: %v", err)
			}
			nftIn(t, txt, "-f", f)
			list := []string{"list", "table", "inet", "kwl"}
			got, want := nftIn(t, nl, list...), nftIn(t, txt, list...)
			if got != want {
				t.Errorf("netlink load differs from nft -f:\n--- netlink\n%s\n--- nft -f %s\n%s", got, f, want)
			}
			debug := append([]string{"--debug=netlink"}, list...)
			gotd, wantd := sameBytecode(nftIn(t, nl, debug...)), sameBytecode(nftIn(t, txt, debug...))
			if gotd != wantd {
				t.Errorf("netlink bytecode differs from nft -f:\n%s", lineDiff(gotd, wantd))
			}
		})
	}
}

// lineDiff lists the lines of a and b that differ, by position.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var sb strings.Builder
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&sb, "line %d:\n  netlink: %s\n  nft -f:  %s\n", i+1, x, y)
		}
	}
	return sb.String()
}

// mustRender renders rs as nft -f text, failing the test on an error.
func mustRender(t *testing.T, rs *nft.Ruleset) string {
	t.Helper()
	s, err := rs.Render()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
