package capture

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
)

// ngInterfaces is a pcapng section of n interface description blocks
// (Ethernet) and one enhanced packet block of frame on interface 0.
func ngInterfaces(n int, frame []byte) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, magicPcapng)
	b = le.AppendUint32(b, 28)
	b = le.AppendUint32(b, 0x1a2b3c4d)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, ^uint64(0))
	b = le.AppendUint32(b, 28)
	for i := 0; i < n; i++ {
		b = le.AppendUint32(b, ngInterfaceBlock)
		b = le.AppendUint32(b, 20)
		b = le.AppendUint16(b, 1) // LINKTYPE_ETHERNET
		b = le.AppendUint16(b, 0)
		b = le.AppendUint32(b, 65535)
		b = le.AppendUint32(b, 20)
	}
	pad := (4 - len(frame)%4) % 4
	total := uint32(32 + len(frame) + pad)
	b = le.AppendUint32(b, 6)
	b = le.AppendUint32(b, total)
	b = le.AppendUint32(b, 0) // interface
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 0) // timestamp
	b = le.AppendUint32(b, uint32(len(frame)))
	b = le.AppendUint32(b, uint32(len(frame)))
	b = append(b, frame...)
	b = append(b, make([]byte, pad)...)
	return le.AppendUint32(b, total)
}

// TestReaderInterfaceBound: a section of MaxInterfaces interfaces is
// read; one more is an error that says so, and a million interface
// blocks cost no more memory than the bound's worth.
func TestReaderInterfaceBound(t *testing.T) {
	frame := ether(0x0800, ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(40000, 22, SYN), v4opt{}))
	ps, _, err := readAll(t, ngInterfaces(MaxInterfaces, frame))
	if err != nil || len(ps) != 1 || ps[0].DPort != 22 {
		t.Fatalf("%d interfaces: %d packets, err %v", MaxInterfaces, len(ps), err)
	}
	_, _, err = readAll(t, ngInterfaces(MaxInterfaces+1, frame))
	if err == nil || !strings.Contains(err.Error(), "more than 4096 interfaces") {
		t.Fatalf("%d interfaces: err %v, want more than %d interfaces", MaxInterfaces+1, err, MaxInterfaces)
	}
	big := ngInterfaces(1_000_000, frame)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Open(bytes.NewReader(big))
	if err == nil {
		var p Packet
		err = r.Next(&p)
	}
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a million interfaces: no error")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a million interface blocks (%d bytes): %v; %d bytes allocated", len(big), err, alloc)
	if alloc > 64<<20 {
		t.Errorf("a million interface blocks allocated %d bytes", alloc)
	}
}
