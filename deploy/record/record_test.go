package record

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

const policy = `service inside = tcp/2222, udp/5000 forward to 192.168.1.5
allow ssh from 192.168.0.0/16, fd00::/8
allow ssh from 10.0.0.0/8 family ipv4
knock 1600 opens ssh for 60s
knock 1700 opens inside for 60s
limit https 10/1s per source
`

func load(t *testing.T, src string) *lang.Policy {
	t.Helper()
	p, diags := lang.Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("policy: %v", diags)
	}
	return p
}

func save(t *testing.T, dir string) *Record {
	t.Helper()
	r := &Record{Backend: "nft", Table: "kwl", File: "/etc/kwl/p.kwl", Text: []byte(policy), Kwl: "test"}
	if err := Save(dir, r, ClosedOf(load(t, policy), "nft", "kwl", []byte(policy))); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deployed")
	save(t, dir)
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != Deployed || r.Backend != "nft" || r.Table != "kwl" || string(r.Text) != policy || r.Kwl != "test" {
		t.Errorf("loaded %+v", r)
	}
	if time.Since(r.Time) > time.Minute {
		t.Errorf("time %v", r.Time)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v: want 0700", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if fi, _ := e.Info(); e.Name() != ".lock" && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode())
		}
	}
	want := []string{".lock", ClosedFile, r.Policy, RecordFile}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}

	// A second deploy leaves only its own policy file.
	r2 := &Record{Backend: "iptables", Table: "kwl", File: "q.kwl", Text: []byte("knock 1600 opens ssh for 60s\n"), Kwl: "test"}
	if err := Save(dir, r2, ClosedOf(load(t, string(r2.Text)), "iptables", "kwl", r2.Text)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.PolicyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old policy file: %v, want it removed", err)
	}
	got, err := Load(dir)
	if err != nil || got.Backend != "iptables" || string(got.Text) != string(r2.Text) {
		t.Errorf("after a second save: %+v, %v", got, err)
	}
}

func TestClosed(t *testing.T) {
	dir := t.TempDir()
	save(t, dir)
	c, err := LoadClosed(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClosedService{
		{Name: "ssh", Ports: []string{"tcp/22"}},
		{Name: "inside", Ports: []string{"tcp/2222", "udp/5000"}, Forward: "192.168.1.5"},
	}
	if !reflect.DeepEqual(sortServices(c.Services), sortServices(want)) {
		t.Errorf("services %+v, want %+v (https is only limited)", c.Services, want)
	}
	wantAllows := []ClosedAllow{
		{Service: "ssh", From: []string{"192.168.0.0/16", "fd00::/8"}},
		{Service: "ssh", From: []string{"10.0.0.0/8"}, Family: "ipv4"},
	}
	if !reflect.DeepEqual(c.Allows, wantAllows) {
		t.Errorf("allows %+v, want %+v", c.Allows, wantAllows)
	}
	p, err := c.Policy("closed.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Doors) != 0 || len(p.Limits) != 0 || len(p.Services) != 2 || len(p.Allows) != 2 {
		t.Fatalf("fail-closed policy: %+v", p)
	}
	for _, s := range p.Services {
		if !s.Guarded {
			t.Errorf("service %s not guarded", s.Name)
		}
	}
	if p.Allows[1].Family != lang.IPv4 || p.Allows[0].Service != p.Services[0] && p.Allows[0].Service != p.Services[1] {
		t.Errorf("allows %+v", p.Allows)
	}
	if d := c.Describe(); !strings.Contains(d, "ssh (tcp/22)") || !strings.Contains(d, "inside (tcp/2222, udp/5000)") {
		t.Errorf("Describe: %q", d)
	}
}

func sortServices(s []ClosedService) map[string]ClosedService {
	m := map[string]ClosedService{}
	for _, x := range s {
		m[x.Name] = x
	}
	return m
}

// TestCorrupt: every kind of damage is an error that says where, never a
// record that loads something else.
func TestCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, r *Record)
		want   string
	}{
		{"policy changed", func(t *testing.T, dir string, r *Record) {
			write(t, r.PolicyPath(), strings.Replace(policy, "1600", "1601", 1))
		}, "corrupt policy: SHA-256"},
		{"policy gone", func(t *testing.T, dir string, r *Record) { os.Remove(r.PolicyPath()) }, "no such file"},
		{"record cut short", func(t *testing.T, dir string, r *Record) {
			b, _ := os.ReadFile(filepath.Join(dir, RecordFile))
			write(t, filepath.Join(dir, RecordFile), string(b[:len(b)/2]))
		}, "corrupt record"},
		{"record garbage", func(t *testing.T, dir string, r *Record) {
			write(t, filepath.Join(dir, RecordFile), "\x00\x00\x00")
		}, "corrupt record"},
		{"unknown field", func(t *testing.T, dir string, r *Record) {
			edit(t, filepath.Join(dir, RecordFile), `"format"`, `"formt"`)
		}, "unknown field"},
		{"bad backend", func(t *testing.T, dir string, r *Record) {
			edit(t, filepath.Join(dir, RecordFile), `"nft"`, `"pf"`)
		}, `unknown backend "pf"`},
		{"policy path outside", func(t *testing.T, dir string, r *Record) {
			edit(t, filepath.Join(dir, RecordFile), r.Policy, "../"+r.Policy)
		}, "bad policy file name"},
		{"no record", func(t *testing.T, dir string, r *Record) { os.Remove(filepath.Join(dir, RecordFile)) }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := save(t, dir)
			tc.damage(t, dir, r)
			got, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %+v, %v; want an error with %q", got, err, tc.want)
			}
			// The fail-closed policy is apart and still loads.
			if _, err := LoadClosed(dir); err != nil {
				t.Errorf("LoadClosed: %v", err)
			}
		})
	}
}

func TestClosedCorrupt(t *testing.T) {
	for _, tc := range []struct{ old, new, want string }{
		{`"tcp/22"`, `"tcp/0"`, "bad port"},
		{`"tcp/22"`, `"sctp/22"`, "bad port"},
		{`"192.168.1.5"`, `"192.168.1"`, "forward"},
		{`"fd00::/8"`, `"fd00::/200"`, "allow ssh"},
		{`"ipv4"`, `"ipv5"`, "unknown family"},
		{`"service": "ssh"`, `"service": "sh"`, "unknown service"},
		{`"format": 1`, `"format": 2`, "format 2"},
		{`"services"`, `"servics"`, "unknown field"},
		{`"table": "kwl"`, `"table": ""`, "bad table"},
	} {
		dir := t.TempDir()
		save(t, dir)
		edit(t, filepath.Join(dir, ClosedFile), tc.old, tc.new)
		if _, err := LoadClosed(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: LoadClosed error %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
}

func TestUndeployed(t *testing.T) {
	dir := t.TempDir()
	if had, err := MarkUndeployed(dir, "nft", "kwl", "test"); had || err != nil {
		t.Fatalf("no record: MarkUndeployed = %v, %v", had, err)
	}
	if _, err := os.Stat(filepath.Join(dir, RecordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no record: MarkUndeployed wrote one (%v)", err)
	}
	r := save(t, dir)
	// Another table's undeploy leaves the record.
	if had, err := MarkUndeployed(dir, "nft", "other", "test"); had || err != nil {
		t.Fatalf("other table: MarkUndeployed = %v, %v", had, err)
	}
	if had, err := MarkUndeployed(dir, "nft", "kwl", "test"); !had || err != nil {
		t.Fatalf("MarkUndeployed = %v, %v", had, err)
	}
	got, err := Load(dir)
	if err != nil || got.State != Undeployed {
		t.Fatalf("Load = %+v, %v; want undeployed", got, err)
	}
	for _, f := range []string{r.PolicyPath(), filepath.Join(dir, ClosedFile)} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it removed", f, err)
		}
	}
	// A damaged record is marked too: the undeploy was intended.
	save(t, dir)
	write(t, filepath.Join(dir, RecordFile), "{")
	if had, err := MarkUndeployed(dir, "nft", "kwl", "test"); !had || err != nil {
		t.Fatalf("damaged record: MarkUndeployed = %v, %v", had, err)
	}
}

// TestSaveKeepsOldOnFailure: a save that cannot write leaves the last
// record whole.
func TestSaveKeepsOldOnFailure(t *testing.T) {
	dir := t.TempDir()
	save(t, dir)
	// A directory in the way of record.json's rename.
	rec := filepath.Join(dir, RecordFile)
	b, _ := os.ReadFile(rec)
	os.Remove(rec)
	os.Mkdir(rec, 0o700)
	os.WriteFile(filepath.Join(rec, "x"), nil, 0o600)
	r := &Record{Backend: "nft", Table: "kwl", Text: []byte("knock 1 opens ssh for 1s\n")}
	if err := Save(dir, r, ClosedOf(load(t, string(r.Text)), "nft", "kwl", r.Text)); err == nil {
		t.Fatal("Save into a blocked record.json succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	os.RemoveAll(rec)
	os.WriteFile(rec, b, 0o600)
	if got, err := Load(dir); err != nil || string(got.Text) != policy {
		t.Errorf("old record: %+v, %v", got, err)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q:\n%s", path, old, b)
	}
	write(t, path, strings.Replace(string(b), old, new, 1))
}

// TestDirFor: the default record is the host namespace's; a named
// namespace has one only where told.
func TestDirFor(t *testing.T) {
	for _, tc := range []struct{ dir, netns, want string }{
		{"", "", DefaultDir},
		{"/tmp/rec", "", "/tmp/rec"},
		{"", "lab", ""},
		{"/tmp/rec", "lab", "/tmp/rec"},
	} {
		if got := DirFor(tc.dir, tc.netns); got != tc.want {
			t.Errorf("DirFor(%q, %q) = %q, want %q", tc.dir, tc.netns, got, tc.want)
		}
	}
}
