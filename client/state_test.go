package client

import (
	"path/filepath"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// TestStateWindow: knocks in one window send the tokens of that window
// and of the next ones, each once, across runs (the file); a new window
// starts from its own; a run of knocks stops MaxAhead windows ahead.
func TestStateWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kwl", "knocks.json")
	now := time.Date(2026, 12, 1, 10, 0, 5, 0, time.UTC)
	w0 := secret.Window(now, lang.TokenWindow)
	var got []int64
	for i := 0; i < 3; i++ {
		s, err := LoadState(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.Window("door", now)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, w-w0)
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := LoadState(path)
	other, _ := s.Window("other door", now)
	later, _ := s.Window("door", now.Add(5*time.Minute))
	if want := []int64{0, 1, 2}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || other != w0 || later != w0+10 {
		t.Errorf("windows %v, another door's %d, 5m later %d; want %v, 0, 10", got, other-w0, later-w0, want)
	}
	s, _ = LoadState(filepath.Join(t.TempDir(), "none"))
	for i := 0; i <= MaxAhead; i++ {
		if _, err := s.Window("door", now); err != nil {
			t.Fatalf("knock %d: %v", i+1, err)
		}
	}
	if _, err := s.Window("door", now); err == nil {
		t.Errorf("knock %d in a window: no error", MaxAhead+2)
	}
}
