// Package baseline holds the loop that kwl's replay benchmarks are
// measured against: a bare Go loop that reads a capture with pcapgo and
// updates one map entry per source.
package baseline

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/gopacket/gopacket/pcapgo"
)

// Count reads the pcap capture in (Ethernet frames) with pcapgo and
// counts the packets of each source in a map, taking the IPv4 or IPv6
// source address at its fixed offset in the frame. It returns the number
// of packets read, and the first error other than io.EOF.
func Count(in io.Reader) (int, error) {
	r, err := pcapgo.NewReader(bufio.NewReaderSize(in, 256<<10))
	if err != nil {
		return 0, err
	}
	seen := make(map[[16]byte]int)
	n := 0
	for {
		data, _, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		var key [16]byte
		if len(data) >= 54 && binary.BigEndian.Uint16(data[12:]) == 0x86dd {
			copy(key[:], data[22:38])
		} else if len(data) >= 34 {
			copy(key[:], data[26:30])
		}
		seen[key]++
	}
}
