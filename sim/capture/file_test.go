package capture

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestOpenFile opens captures by name: plain and gzip-compressed files,
// standard input, and the names it refuses, each error naming the file.
func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	pcap := writePcap(t, false, layers.LinkTypeEthernet, [][]byte{synFrom(1, 22), synFrom(2, 22)}, []time.Duration{0, time.Second})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcap)
	zw.Close()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, zipped, empty := write("t.pcap", pcap), write("t.pcap.gz", gz.Bytes()), write("empty.pcap", nil)

	for _, tc := range []struct {
		name, file string
		stdin      []byte
		size       int64
	}{
		{"pcap", plain, nil, int64(len(pcap))},
		{"gzip", zipped, nil, int64(gz.Len())},
		{"stdin", "-", pcap, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := OpenFile(tc.file, bytes.NewReader(tc.stdin))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Size != tc.size {
				t.Errorf("Size %d, want %d", f.Size, tc.size)
			}
			n := 0
			var p Packet
			for f.Reader.Next(&p) == nil {
				n++
			}
			if n != 2 {
				t.Errorf("read %d packets, want 2", n)
			}
			read := int64(len(tc.stdin))
			if tc.size > 0 {
				read = tc.size
			}
			if f.Offset() != read {
				t.Errorf("Offset %d after the last packet, want %d", f.Offset(), read)
			}
		})
	}

	for _, tc := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "none.pcap"), "open " + filepath.Join(dir, "none.pcap") + ": no such file or directory"},
		{"directory", dir, dir + ": is a directory, not a capture"},
		{"empty", empty, empty + ": empty file: no capture header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := OpenFile(tc.file, strings.NewReader(""))
			if err == nil {
				f.Close()
				t.Fatal("opened")
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
		})
	}
}
