package main

import (
	"fmt"
	"strings"

	"kwl.dev/kwl/lang"
)

// lintFlags are the flags that say which diagnostics a command shows
// and which fail it: --strict, --ignore CODES and --notes, on check,
// compile and deploy.
type lintFlags struct {
	strict bool
	ignore string
	notes  bool
	codes  map[lang.Code]bool // parsed from ignore by parse
}

// addLintFlags registers the flags on fs.
func addLintFlags(fs *flagSet) *lintFlags {
	lf := &lintFlags{}
	fs.BoolVar(&lf.strict, "strict", false, "fail (exit 1) on warnings too, as on errors")
	fs.StringVar(&lf.ignore, "ignore", "", "silence the warnings and notes of these `CODES` (L07,L09)")
	fs.BoolVar(&lf.notes, "notes", false, "also print notes: what holds for every policy on the backend, such as set sizes (L07)")
	return lf
}

// parse checks --ignore: registered lint codes only, since errors cannot
// be silenced. It returns a message for bad usage, or "".
func (lf *lintFlags) parse() string {
	lf.codes = map[lang.Code]bool{}
	for _, w := range strings.FieldsFunc(lf.ignore, func(r rune) bool { return r == ',' || r == ' ' }) {
		c := lang.Code(strings.ToUpper(w))
		switch {
		case !c.Known():
			return fmt.Sprintf("--ignore %s: no such code (kwl help lints lists them)", w)
		case !c.IsLint():
			return fmt.Sprintf("--ignore %s: errors cannot be silenced", w)
		}
		lf.codes[c] = true
	}
	return ""
}

// filter returns the diagnostics the command shows: without the codes
// --ignore names, and without notes unless --notes. A nil lintFlags
// drops the notes only.
func (lf *lintFlags) filter(ds lang.Diagnostics) lang.Diagnostics {
	if lf == nil {
		lf = &lintFlags{}
	}
	out := ds[:0:0]
	for _, d := range ds {
		if d.Severity != lang.Error && (lf.codes[d.Code] || d.Severity == lang.Note && !lf.notes) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// fails reports whether the diagnostics shown fail the command: an
// error, or with --strict a warning.
func (lf *lintFlags) fails(ds lang.Diagnostics) bool {
	for _, d := range ds {
		if d.Severity == lang.Error || lf != nil && lf.strict && d.Severity == lang.Warning {
			return true
		}
	}
	return false
}
