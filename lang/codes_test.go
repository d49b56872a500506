package lang

import (
	"os"
	"regexp"
	"testing"
)

// TestCodesDocumented checks the package doc against the registry: every
// code has an entry in the doc's lists, and the doc names no other code.
func TestCodesDocumented(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[Code]bool{}
	for _, m := range regexp.MustCompile(`(?m)^//\t([EL][0-9]{2}) `).FindAllSubmatch(src, -1) {
		c := Code(m[1])
		if listed[c] {
			t.Errorf("doc.go lists %s twice", c)
		}
		listed[c] = true
	}
	for _, c := range Codes() {
		if !listed[c] {
			t.Errorf("code %s (%s) is missing from the lists of doc.go", c, c.Meaning())
		}
	}
	for _, m := range regexp.MustCompile(`\b[EL][0-9]{2}\b`).FindAll(src, -1) {
		if c := Code(m); !c.Known() {
			t.Errorf("doc.go names %s, which is not a registered code", c)
		}
	}
}

// TestCodesRegistry checks that every code has a meaning and an example.
func TestCodesRegistry(t *testing.T) {
	for _, c := range Codes() {
		if c.Meaning() == "" || c.Example() == "" {
			t.Errorf("%s: meaning %q, example %q", c, c.Meaning(), c.Example())
		}
		if c.IsLint() != (c[0] == 'L') || len(c) != 3 {
			t.Errorf("%s: malformed code", c)
		}
	}
}
