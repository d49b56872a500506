package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

// TestHelpCodes checks that the commands' help and the README name only
// registered diagnostic codes (lang.Code).
func TestHelpCodes(t *testing.T) {
	code := regexp.MustCompile(`\b[EL][0-9]{2}\b`)
	texts := map[string]string{}
	for name, c := range commands {
		texts["kwl help "+name] = c.usage + "\n" + c.long
	}
	if readme, err := os.ReadFile("../../README.md"); err == nil {
		texts["README.md"] = string(readme)
	}
	for where, text := range texts {
		for _, m := range code.FindAllString(text, -1) {
			if !lang.Code(m).Known() {
				t.Errorf("%s names %s, which is not a registered code", where, m)
			}
		}
	}
}

// TestExplainExamples checks that the example of every code has the
// code, so that kwl explain shows what kwl check says of it. Two codes
// are of sizes no example line can show.
func TestExplainExamples(t *testing.T) {
	inWords := map[lang.Code]bool{lang.ErrNameLength: true, lang.ErrTestLength: true}
	for _, c := range lang.Codes() {
		var b strings.Builder
		explainCode(&b, c)
		if says := strings.Contains(b.String(), "kwl check says:"); says == inWords[c] {
			t.Errorf("kwl explain %s: the example does not show the code:\n%s", c, b.String())
		}
	}
}
