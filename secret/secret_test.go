package secret

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var key = []byte("0123456789abcdef0123456789abcdef")

// TestToken: the tokens are HMAC-SHA256's, computed here independently
// (Python's hmac module) for three windows.
func TestToken(t *testing.T) {
	for _, tc := range []struct {
		w    int64
		want string
	}{
		{0, "1fc9d3a0010d6f62bdf559b04aa5740c"},
		{59024160, "4a9cd54024a4d4973726865501451ee1"},
		{-1, "427def582834f0879c5118eda37d0b48"},
	} {
		tok := Token(key, tc.w)
		if got := hex.EncodeToString(tok[:]); got != tc.want {
			t.Errorf("window %d: %s, want %s", tc.w, got, tc.want)
		}
	}
}

// TestPorts: the ports of a window, computed independently; a range of
// four ports gives all four; the skipped ports are left out; a range too
// small is an error.
func TestPorts(t *testing.T) {
	got, err := Ports(key, 59024160, 3, 1024, 65535, nil)
	if err != nil || !slices.Equal(got, []uint16{62962, 48417, 45120}) {
		t.Errorf("ports %v, %v; want [62962 48417 45120]", got, err)
	}
	got, err = Ports(key, 59024160, 4, 1, 4, nil)
	if err != nil || !slices.Equal(got, []uint16{3, 2, 1, 4}) {
		t.Errorf("ports of 1-4 %v, %v; want [3 2 1 4]", got, err)
	}
	skip := func(p uint16) bool { return p == 48417 || p%2 == 1 }
	got, err = Ports(key, 59024160, 50, 1024, 65535, skip)
	if err != nil || len(got) != 50 || slices.ContainsFunc(got, skip) {
		t.Errorf("ports with skips: %v, %v", got, err)
	}
	if _, err := Ports(key, 1, 5, 1, 4, nil); err != ErrNoPorts {
		t.Errorf("5 of 4 ports: %v, want ErrNoPorts", err)
	}
}

func TestWindow(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 15, 0, time.UTC)
	w := Window(at, 30*time.Second)
	if w != 1796119200/30 || !Start(w, 30*time.Second).Equal(at.Add(-15*time.Second)) {
		t.Errorf("window %d starting %v", w, Start(w, 30*time.Second))
	}
	if w := Window(time.Unix(-1, 0), 30*time.Second); w != -1 {
		t.Errorf("1s before the epoch: window %d, want -1", w)
	}
}

// TestRead: a secret file only its owner can read, of 16 bytes or more,
// is read; one that others can read, a short one and a symbolic link are
// refused with the fix.
func TestRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", string(key), 0o600)
	if b, err := Read(good); err != nil || string(b) != string(key) {
		t.Errorf("Read(good) = %q, %v", b, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{write("open", string(key), 0o644), "mode 0644 lets others read it: chmod 600"},
		{write("short", "too short", 0o400), "9 bytes, want at least 16: head -c 32 /dev/urandom >"},
		{link, "not a regular file"},
		{filepath.Join(dir, "none"), "no such file"},
	} {
		_, err := Read(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Read(%s): %v, want %q", filepath.Base(tc.path), err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), string(key)) {
			t.Errorf("Read(%s): the error shows the secret", filepath.Base(tc.path))
		}
	}
}
