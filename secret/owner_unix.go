//go:build unix

package secret

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// owned checks that root or the user kwl runs as owns the file.
func owned(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if st.Uid != 0 && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("secret %s: owned by uid %d, not by root or by you (uid %d): chown root %s", path, st.Uid, os.Getuid(), path)
	}
	return nil
}
