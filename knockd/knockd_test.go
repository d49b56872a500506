package knockd

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden translates each testdata/*.conf (the knockd man page's
// examples among them) and compares the policy with testdata/*.kwl; the
// policy must also pass kwl check.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.conf")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Translate(filepath.Base(f), src)
			if err != nil {
				t.Fatal(err)
			}
			if _, diags := lang.Load(f, out); diags.HasErrors() {
				t.Errorf("translation has errors: %v\n%s", diags, out)
			}
			irtest.Golden(t, strings.TrimSuffix(f, ".conf")+".kwl", string(out), *update)
		})
	}
}

// TestErrors: text that is not knockd.conf is an error with its line.
func TestErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"sequence = 1", "k.conf:1: \"sequence = 1\" comes before any [section]"},
		{"[a]\n\n[b", "k.conf:3: section header \"[b\" has no closing ]"},
	}
	for _, tc := range tests {
		_, err := Translate("k.conf", []byte(tc.src))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v, want %s", tc.src, err, tc.want)
		}
	}
}

// FuzzTranslate: any text translates or fails with an error, and what it
// translates to parses.
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := Translate("f.conf", src)
		if err != nil {
			return
		}
		if _, diags := lang.Parse("f.kwl", out); diags.HasErrors() {
			t.Fatalf("translation does not parse: %v\n%s", diags, out)
		}
	})
}
