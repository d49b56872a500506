package iptables

import (
	"os/exec"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/irtest"
)

// TestRenderReload loads every golden policy's first-load form, then its
// reload form twice, and finds each jump once; the reload form alone,
// on a host without the jumps, fails and leaves the tables as they were.
func TestRenderReload(t *testing.T) {
	needRoot(t, "iptables-restore", "ip6tables-restore")
	for name, p := range irtest.Goldens(t, "../../examples", Name) {
		rs, diags := Lower(p)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		first4, first6, err := rs.Render()
		if err != nil {
			t.Fatal(err)
		}
		again4, again6, err := rs.RenderReload()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			tool, first, again string
			fam                *Family
		}{{"iptables", first4, again4, rs.V4}, {"ip6tables", first6, again6, rs.V6}} {
			jumps := 0
			for _, js := range mustJumps(t, f.fam) {
				jumps += len(js)
			}
			if jumps == 0 {
				continue
			}
			ns := newNS(t)
			save := func() string {
				out, err := exec.Command("ip", "netns", "exec", ns, f.tool+"-save").CombinedOutput()
				if err != nil {
					t.Fatalf("%s-save: %v\n%s", f.tool, err, out)
				}
				var b strings.Builder
				for _, l := range strings.Split(string(out), "\n") {
					if !strings.HasPrefix(l, "#") {
						b.WriteString(l + "\n")
					}
				}
				return b.String()
			}
			load := func(text string) error {
				cmd := exec.Command("ip", "netns", "exec", ns, f.tool+"-restore", "--noflush")
				cmd.Stdin = strings.NewReader(text)
				out, err := cmd.CombinedOutput()
				if err != nil {
					return &loadError{err, string(out)}
				}
				return nil
			}
			before := save()
			if err := load(f.again); err == nil {
				t.Errorf("%s %s: the reload form loads where the jumps are missing", name, f.tool)
			} else if after := save(); after != before {
				t.Errorf("%s %s: a failed reload changed the tables:\n%s\nwas\n%s", name, f.tool, after, before)
			}
			for i, text := range []string{f.first, f.again, f.again} {
				if err := load(text); err != nil {
					t.Fatalf("%s %s load %d: %v", name, f.tool, i+1, err)
				}
			}
			s := save()
			for table, js := range mustJumps(t, f.fam) {
				for _, j := range js {
					if n := strings.Count(s, "-A "+j+"\n"); n != 1 {
						t.Errorf("%s %s table %s: %d jumps -A %s after three loads:\n%s", name, f.tool, table, n, j, s)
					}
				}
			}
		}
	}
}

type loadError struct {
	err error
	out string
}

func (e *loadError) Error() string { return e.err.Error() + ": " + e.out }
