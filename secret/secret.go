// Package secret derives the knocks of a door from a shared secret: the
// token of a single authenticated datagram and the ports of a rotating
// sequence, for each window of time, the way TOTP derives its codes.
// Server (the compiled ruleset) and client (kwl knock) derive the same
// values from the same secret file; the ruleset holds only what is
// derived, never the secret.
//
// A window is the number of whole periods since the Unix epoch. Its
// token is the first 16 bytes of HMAC-SHA256(secret, "kwl token" ||
// window as 8 bytes, big-endian); its ports come from HMAC-SHA256(secret,
// "kwl ports" || window || counter), two bytes a port.
package secret

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// MinSize is the shortest secret accepted, in bytes: 128 bits.
const MinSize = 16

// TokenSize is the length of a token, in bytes: what a datagram carries.
const TokenSize = 16

// Read reads the secret in the file at path. The file must be a regular
// file that only its owner may read (mode 0600 or 0400), owned by root or
// by the user kwl runs as, and hold at least MinSize bytes; a trailing
// newline is part of the secret. The errors name the file and say how to
// fix it, never the secret.
func Read(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("secret %s: no such file: make one with (umask 077; head -c 32 /dev/urandom > %s)", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret %s: not a regular file (%s); a symbolic link is not followed", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret %s: mode %04o lets others read it: chmod 600 %s", path, perm, path)
	}
	if err := owned(path, fi); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < MinSize {
		return nil, fmt.Errorf("secret %s: %d bytes, want at least %d: head -c 32 /dev/urandom > %s", path, len(b), MinSize, path)
	}
	return b, nil
}

// StandIn returns the stand-in secret of the file at path: what test
// blocks, kwl check and the simulator derive tokens from, so that they
// never read a secret. It is SHA-256 of "kwl stand-in secret" and the
// path, which anyone can compute: never a secret.
func StandIn(path string) []byte {
	h := sha256.Sum256([]byte("kwl stand-in secret\x00" + path))
	return h[:]
}

// ID names a secret without telling it: the first 8 bytes of
// HMAC-SHA256(secret, "kwl key id"), in hex. A ruleset records it with
// its tokens, so that a new secret is told from the old one.
func ID(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("kwl key id"))
	return fmt.Sprintf("%x", m.Sum(nil)[:8])
}

// Window returns the window of period every that holds t.
func Window(t time.Time, every time.Duration) int64 {
	ns := t.UnixNano()
	w := ns / int64(every)
	if ns%int64(every) < 0 {
		w--
	}
	return w
}

// Start returns when window w of period every begins.
func Start(w int64, every time.Duration) time.Time {
	return time.Unix(0, w*int64(every)).UTC()
}

// Token returns the token of window w.
func Token(secret []byte, w int64) [TokenSize]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("kwl token"))
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(w)))
	var t [TokenSize]byte
	copy(t[:], m.Sum(nil))
	return t
}

// ErrNoPorts reports a range too small for the ports asked for.
var ErrNoPorts = errors.New("secret: not enough ports in the range")

// Ports returns n distinct ports of window w, each in [lo, hi] and none
// for which skip reports true: two bytes of the HMAC a candidate, reduced
// without bias (a candidate in the last, incomplete copy of the range is
// drawn again).
func Ports(secret []byte, w int64, n int, lo, hi uint16, skip func(uint16) bool) ([]uint16, error) {
	if lo > hi || lo == 0 {
		return nil, ErrNoPorts
	}
	span := uint32(hi) - uint32(lo) + 1
	limit := 65536 - 65536%span // candidates below it reduce evenly
	var out []uint16
	for counter := uint32(0); len(out) < n; counter++ {
		if counter == 1<<16 {
			return nil, ErrNoPorts
		}
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("kwl ports"))
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(w)))
		m.Write(binary.BigEndian.AppendUint32(nil, counter))
		sum := m.Sum(nil)
		for i := 0; i+1 < len(sum) && len(out) < n; i += 2 {
			c := uint32(binary.BigEndian.Uint16(sum[i:]))
			if c >= limit {
				continue
			}
			p := lo + uint16(c%span)
			if (skip != nil && skip(p)) || slices.Contains(out, p) {
				continue
			}
			out = append(out, p)
		}
	}
	return out, nil
}
