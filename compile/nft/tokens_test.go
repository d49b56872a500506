package nft

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// TestTokenElements: the tokens of a load at now run from the window
// before now's to the one at now+d, each living to the end of the window
// after its own; a token whose time has passed is left out.
func TestTokenElements(t *testing.T) {
	ts := &TokenSource{Secret: "/k", Every: lang.TokenWindow, Skew: lang.TokenSkew}
	key := secret.StandIn("/k")
	now := time.Date(2026, 12, 1, 10, 0, 10, 0, time.UTC) // 10s into a window
	from, to := ts.Windows(now, time.Minute)
	w := secret.Window(now, lang.TokenWindow)
	if from != w-1 || to != w+2 {
		t.Fatalf("windows %d..%d, want %d..%d", from-w, to-w, -1, 2)
	}
	es := ts.Elements(key, now, from, to)
	want := []time.Duration{20 * time.Second, 50 * time.Second, 80 * time.Second, 110 * time.Second}
	if len(es) != len(want) {
		t.Fatalf("%d elements, want %d", len(es), len(want))
	}
	for i, e := range es {
		if e.Timeout != want[i] || e.Key != secret.Token(key, from+int64(i)) {
			t.Errorf("element %d: timeout %v, want %v", i, e.Timeout, want[i])
		}
	}
	if es := ts.Elements(key, now, w-3, w-2); len(es) != 0 {
		t.Errorf("windows past: %d elements, want none", len(es))
	}
}

// BenchmarkTokenElements measures a day of tokens (what kwl deploy loads)
// against as many bare HMAC-SHA256 computations in the same run.
func BenchmarkTokenElements(b *testing.B) {
	ts := &TokenSource{Secret: "/k", Every: lang.TokenWindow, Skew: lang.TokenSkew}
	key := secret.StandIn("/k")
	now := time.Now()
	from, to := ts.Windows(now, 24*time.Hour)
	n := to - from + 1
	b.Run("baseline-hmac", func(b *testing.B) {
		var buf [8]byte
		for b.Loop() {
			for i := int64(0); i < n; i++ {
				m := hmac.New(sha256.New, key)
				m.Write(buf[:])
				m.Sum(nil)
			}
		}
	})
	b.Run("day", func(b *testing.B) {
		for b.Loop() {
			ts.Elements(key, now, from, to)
		}
	})
}
