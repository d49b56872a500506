package irtest

import (
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

// Load checks src as the file p.kwl, failing the test on its errors.
func Load(t testing.TB, src string) *lang.Policy {
	t.Helper()
	p, diags := lang.Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return p
}

// Refused checks the errors of diags, a backend's lowering of a policy
// of Load: none when want is "", else exactly one, of code, whose
// "line:col: message" starts with want and whose hint contains hint.
func Refused(t testing.TB, diags lang.Diagnostics, want string, code lang.Code, hint string) {
	t.Helper()
	var errs []lang.Diagnostic
	for _, d := range diags {
		if d.Severity == lang.Error {
			errs = append(errs, d)
		}
	}
	if want == "" {
		if len(errs) > 0 {
			t.Fatalf("unexpected errors: %v", errs)
		}
		return
	}
	if len(errs) != 1 {
		t.Fatalf("got %d errors, want 1:\n%v", len(errs), diags)
	}
	e := errs[0]
	got := strings.TrimPrefix(e.Pos.String(), "p.kwl:") + ": " + e.Message
	if !strings.HasPrefix(got, want) || e.Code != code || !strings.Contains(e.Hint, hint) || e.Hint == "" {
		t.Errorf("got  %s [%s] hint %q\nwant %s [%s] hint with %q", got, e.Code, e.Hint, want, code, hint)
	}
}
