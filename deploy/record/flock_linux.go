package record

import (
	"os"

	"golang.org/x/sys/unix"
)

// flock takes an exclusive lock on f, waiting for it (flock(2)).
func flock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX) }
