package capture

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// A File is a capture opened by name for reading, with how far into it
// the reading is, for a progress display.
type File struct {
	// Reader reads the capture's packets.
	Reader *Reader
	// Size is the file's size in bytes; 0 when it is not known (standard
	// input, a pipe).
	Size int64

	f    *os.File // nil for standard input
	read atomic.Int64
}

// countingReader counts the bytes read from a capture file.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// OpenFile opens the capture named name (pcap or pcapng, optionally
// gzip-compressed, as Open reads it); "-" reads stdin. A directory is
// refused. The errors of the file's header name the file.
func OpenFile(name string, stdin io.Reader) (*File, error) {
	cf := &File{}
	in := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		if st, err := f.Stat(); err == nil {
			if st.IsDir() {
				f.Close()
				return nil, fmt.Errorf("%s: is a directory, not a capture", name)
			}
			cf.Size = st.Size()
		}
		in, cf.f = f, f
	}
	r, err := Open(countingReader{r: in, n: &cf.read})
	if err != nil {
		cf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cf.Reader = r
	return cf, nil
}

// Offset returns how many bytes of the file have been read so far. It may
// be called while another goroutine reads the packets.
func (f *File) Offset() int64 { return f.read.Load() }

// Close closes the file; it does not close standard input.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}
