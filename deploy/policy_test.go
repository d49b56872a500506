//go:build linux

package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
)

const knockSSH = "knock 1600 opens ssh for 60s\nlimit https 10/1s per source\n"

func TestPolicyIDAndGuarded(t *testing.T) {
	if got := PolicyID([]byte(knockSSH)); !strings.HasPrefix(got, "sha256:") || len(got) != len("sha256:")+16 {
		t.Errorf("PolicyID = %q, want sha256: and 16 hex digits", got)
	}
	if PolicyID([]byte(knockSSH)) == PolicyID([]byte(knockSSH+"\n")) {
		t.Error("two texts have one PolicyID")
	}
	if got := Guarded(irtest.Load(t, knockSSH)); !slices.Equal(got, []string{"ssh"}) {
		t.Errorf("Guarded = %q, want [ssh]: https is limited, not knocked", got)
	}
}

// TestVet: the refusals before the kernel is touched.
func TestVet(t *testing.T) {
	passing := knockSSH + "test \"t\" {\n    at 0s from 198.51.100.10 tcp/22 expect drop\n}\n"
	failing := knockSSH + "test \"t\" {\n    at 0s from 198.51.100.10 tcp/22 expect accept\n}\n"
	for _, tc := range []struct {
		name, src string
		force     bool
		want      any // nil, *EmptyPolicyError or *TestError
	}{
		{"statements", knockSSH, false, nil},
		{"passing tests", passing, false, nil},
		{"empty", "# nothing\n", false, &EmptyPolicyError{}},
		{"empty, forced", "# nothing\n", true, nil},
		{"failing tests", failing, false, &TestError{}},
		{"failing tests, forced", failing, true, &TestError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, b := range []string{"nft", "iptables"} {
				err := Vet(irtest.Load(t, tc.src), b, tc.force)
				var empty *EmptyPolicyError
				var tests *TestError
				switch tc.want.(type) {
				case nil:
					if err != nil {
						t.Errorf("%s: %v", b, err)
					}
				case *EmptyPolicyError:
					if !errors.As(err, &empty) || empty.File != "p.kwl" {
						t.Errorf("%s: %v, want an EmptyPolicyError", b, err)
					}
				case *TestError:
					if !errors.As(err, &tests) || tests.Backend != b || len(tests.Failed) != 1 || tests.Failed[0].Passed() {
						t.Errorf("%s: %v, want a TestError with the failed test", b, err)
					}
				}
			}
		})
	}
}

// TestRecordDeploy records a deploy, then its undeploy; an undeploy of
// another backend leaves the record alone.
func TestRecordDeploy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	o := Options{NetNS: "lab"}
	if err := RecordDeploy(dir, o, "nft", "p.kwl", []byte(knockSSH), irtest.Load(t, knockSSH), "v1"); err != nil {
		t.Fatal(err)
	}
	r, err := record.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if r.State != record.Deployed || r.Backend != "nft" || r.Table != DefaultTable || r.File != filepath.Join(wd, "p.kwl") || string(r.Text) != knockSSH || r.Kwl != "v1" {
		t.Errorf("record: %+v", r)
	}
	c, err := record.LoadClosed(dir)
	if err != nil || c.Describe() != "ssh (tcp/22)" {
		t.Errorf("fail-closed policy: %v, %v", c, err)
	}
	if err := RecordUndeploy(dir, o, "iptables", "v2"); err != nil {
		t.Fatal(err)
	}
	if r, err := record.Load(dir); err != nil || r.State != record.Deployed {
		t.Errorf("after an undeploy of iptables: %+v, %v", r, err)
	}
	if err := RecordUndeploy(dir, o, "", "v2"); err != nil {
		t.Fatal(err)
	}
	if r, err := record.Load(dir); err != nil || r.State != record.Undeployed || r.Kwl != "v2" {
		t.Errorf("after an undeploy of both: %+v, %v", r, err)
	}
}

// TestRestoreNoRecord: with no record and no fail-closed policy, Restore
// says why and loads nothing (the kernel is not touched).
func TestRestoreNoRecord(t *testing.T) {
	res := Restore(context.Background(), Options{NetNS: "none"}, filepath.Join(t.TempDir(), "none"))
	if res.Record != nil || res.Closed != nil {
		t.Errorf("Restore: %+v", res)
	}
	if res.Err == nil || !strings.HasPrefix(res.Err.Error(), "no record of a deploy: ") || !errors.Is(res.Err, os.ErrNotExist) {
		t.Errorf("Err = %v", res.Err)
	}
	if !errors.Is(res.ClosedErr, os.ErrNotExist) {
		t.Errorf("ClosedErr = %v", res.ClosedErr)
	}
}

// TestRestore loads a record into a namespace; a record whose policy no
// longer compiles gives a PolicyError with its errors and loads the
// fail-closed policy; after an undeploy nothing is loaded.
func TestRestore(t *testing.T) {
	ns := newNS(t, "restore")
	o := opts(t, ns)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "rec")
	if err := RecordDeploy(dir, o, "nft", "p.kwl", []byte(knockSSH), irtest.Load(t, knockSSH), "v1"); err != nil {
		t.Fatal(err)
	}
	res := Restore(ctx, o, dir)
	if res.Err != nil || res.Record == nil || res.Closed != nil {
		t.Fatalf("Restore: %+v", res)
	}
	st, err := Status(ctx, o)
	if err != nil || !st.Loaded {
		t.Fatalf("after Restore: loaded %v, %v", st != nil && st.Loaded, err)
	}

	bad := []byte("knock 1600 opens ssh for 60s\nlimit ssh 0/60s\n")
	if err := record.Save(dir, &record.Record{Backend: "nft", Table: "kwl", File: "p.kwl", Text: bad, Kwl: "old"}, record.ClosedOf(irtest.Load(t, knockSSH), "nft", "kwl", []byte(knockSSH))); err != nil {
		t.Fatal(err)
	}
	res = Restore(ctx, o, dir)
	var pe *PolicyError
	if !errors.As(res.Err, &pe) || pe.Closed || string(pe.Src) != string(bad) || !pe.Diags.HasErrors() {
		t.Fatalf("Err = %v, want a PolicyError with the policy's errors", res.Err)
	}
	for _, d := range pe.Diags {
		if d.Severity != lang.Error {
			t.Errorf("a PolicyError of a recorded policy holds %v", d)
		}
	}
	if res.ClosedErr != nil || res.Closed == nil || res.Closed.Describe() != "ssh (tcp/22)" {
		t.Fatalf("fail-closed: %+v", res)
	}

	if err := RecordUndeploy(dir, o, "", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := Undeploy(ctx, o); err != nil {
		t.Fatal(err)
	}
	res = Restore(ctx, o, dir)
	if res.Record == nil || res.Record.State != record.Undeployed || res.Err != nil || res.Closed != nil {
		t.Fatalf("Restore after an undeploy: %+v", res)
	}
	if st, err := Status(ctx, o); err != nil || st.Loaded {
		t.Errorf("Restore after an undeploy loaded a table (%v)", err)
	}
}
