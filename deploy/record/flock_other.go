//go:build !linux

package record

import (
	"errors"
	"os"
)

// flock fails: kwl records deploys, and takes their lock, on Linux only.
func flock(f *os.File) error { return errors.New("locking a record needs Linux") }
