package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// A State remembers, for each secret door knocked from this machine, the
// last window whose token was sent. A token opens once, so a second
// knock in the same window sends the next window's token instead: the
// firewall holds the tokens of the coming hours, and takes any of them.
type State struct {
	path string
	// Last is the last window sent, by door (Key).
	Last map[string]int64 `json:"last"`
}

// MaxAhead is how many windows past the current one State.Window goes,
// for a run of knocks in a short time, before it refuses: an hour of
// 30 s windows, well within the tokens a deploy loads (24 hours).
const MaxAhead = 120

// StatePath returns where kwl knock keeps its State: in
// $XDG_STATE_HOME/kwl, or ~/.local/state/kwl.
func StatePath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "kwl", "knocks.json"), nil
}

// LoadState reads the state at path; a missing file is an empty state.
func LoadState(path string) (*State, error) {
	s := &State{path: path, Last: map[string]int64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to start afresh)", path, err)
	}
	if s.Last == nil {
		s.Last = map[string]int64{}
	}
	return s, nil
}

// Key names a secret door of a host for a State: the secret's ID (never
// the secret), the host and the knock port.
func Key(key []byte, pl *Plan) string {
	return fmt.Sprintf("%s %s", secret.ID(key), addrPort(pl.Host, pl.Knocks[0].Num))
}

// Window returns the window whose token to send for door at now: the
// current one, or the one after the last sent when that was sent in it
// or later. It records it; Save writes it down.
func (s *State) Window(door string, now time.Time) (int64, error) {
	cur := secret.Window(now, lang.TokenWindow)
	w := cur
	if last, ok := s.Last[door]; ok && last >= w {
		w = last + 1
	}
	if w > cur+MaxAhead {
		return 0, fmt.Errorf("%d knocks within the hour: wait for the window of %s", w-cur, secret.Start(w-MaxAhead, lang.TokenWindow).Format(time.TimeOnly))
	}
	for k, last := range s.Last {
		if last < cur-lang.TokenSkew {
			delete(s.Last, k)
		}
	}
	s.Last[door] = w
	return w, nil
}

// Save writes the state, readable by its owner alone.
func (s *State) Save() error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}
