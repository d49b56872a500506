package capture

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// FuzzPcapRecords holds Reader's own pcap record loop to pcapgo's: the
// same packets, times and final error on any input pcapgo reads as pcap.
func FuzzPcapRecords(f *testing.F) {
	t := &testing.T{}
	f.Add(writePcap(t, true, layers.LinkTypeEthernet, [][]byte{synFrom(1, 22), synFrom(2, 80), {1, 2}}, []time.Duration{0, time.Second, 3 * time.Millisecond}))
	f.Add(writePcap(t, false, layers.LinkTypeRaw, [][]byte{{0x45}, nil}, []time.Duration{5, 0}))
	f.Add(bigEndianPcap([][]byte{synFrom(1, 22)}, []uint32{1}, []uint32{2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ref, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil || len(b) < 4 || b[0] == 0x1f || !LinkType(ref.LinkType()).Supported() {
			return
		}
		r, err := Open(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("pcapgo reads the header, Open does not: %v", err)
		}
		lt := LinkType(ref.LinkType())
		var p, q Packet
		var first time.Time
		for n := 1; ; n++ {
			data, ci, rerr := ref.ZeroCopyReadPacketData()
			err := r.Next(&p)
			if rerr != nil {
				if rerr == io.EOF {
					if err != io.EOF {
						t.Fatalf("packet %d: pcapgo ends, Reader says %v", n, err)
					}
					return
				}
				var e *Error
				if !errors.As(err, &e) || e.N != n {
					t.Fatalf("packet %d: pcapgo fails with %v, Reader says %v", n, rerr, err)
				}
				if rerr == io.ErrUnexpectedEOF {
					rerr = ErrTruncated
				}
				if want := explain(rerr).Error(); e.Err.Error() != want {
					t.Fatalf("packet %d: error %q, pcapgo's %q", n, e.Err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("packet %d: pcapgo reads it, Reader says %v", n, err)
			}
			if n == 1 {
				first = ci.Timestamp
			}
			q = Packet{N: n, Time: ci.Timestamp.Sub(first)}
			Decode(lt, data, &q)
			if p != q {
				t.Fatalf("packet %d: %+v, pcapgo gives %+v", n, p, q)
			}
		}
	})
}
