package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Magic numbers at the start of a capture file, read little-endian.
const (
	magicPcapMicro    = 0xa1b2c3d4
	magicPcapNano     = 0xa1b23c4d
	magicPcapModified = 0xa1b2cd34 // Alexey Kuznetzov's patched libpcap: 8 more bytes per record
	magicPcapng       = 0x0a0d0d0a // section header block type, the same in both byte orders
)

// bufSize is the read buffer. It is larger than the 4096 bytes pcapgo
// would use so that pcapgo keeps ours (bufio.NewReader returns a
// *bufio.Reader that is big enough unchanged) and the reader can tell the
// byte offset of each record from what it has read and what is buffered.
const bufSize = 256 << 10

// Reader streams the packets of a pcap or pcapng capture. Memory does not
// grow with the capture: frames are read into one reused buffer and
// decoded into a Packet the caller owns.
type Reader struct {
	count  countReader
	br     *bufio.Reader
	pcap   *pcapgo.Reader
	ng     *pcapgo.NgReader
	link   LinkType // of a pcap file; pcapng gives it per interface
	format string
	// perRecord is how many bytes of each record the reader hides from
	// pcapgo (the modified pcap format's extra header), to give offsets in
	// the file rather than in what pcapgo saw.
	perRecord int64
	gzip      bool
	warnings  []string
	n         int
	first     time.Time
	err       error
	defrag    Defrag // fragments are reassembled as the kernel does

	// The plain pcap record loop (see nextPcap): whether the file is
	// big-endian, what its fractional timestamps are multiplied by to give
	// nanoseconds, the longest record pcapgo would take, the first
	// packet's time in nanoseconds since the epoch, and the buffer for a
	// record longer than br can hold.
	bigEndian bool
	fracScale uint32
	maxCap    int
	firstNs   int64
	big       bytes.Buffer
}

// Error is an error in a capture file after its header: it names the
// packet (1-based, counting the packets read before) and the byte offset
// of the record where reading stopped.
type Error struct {
	N      int   // the packet that could not be read
	Offset int64 // byte offset of its record (of the decompressed stream for .gz)
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("packet %d (record at byte offset %d): %v", e.N, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTruncated is what Error wraps when the file ends inside a record: the
// capture was cut, typically because it was copied while being written.
var ErrTruncated = errors.New("the file ends inside this record (truncated capture)")

// Open reads the header of a capture from r and returns a Reader for its
// packets. It detects the format by its magic number: pcap (micro- or
// nanosecond timestamps, either byte order, and the "modified" variant),
// pcapng, and either of them compressed with gzip.
func Open(r io.Reader) (*Reader, error) {
	in := bufio.NewReaderSize(r, 64<<10)
	rd := &Reader{}
	src := io.Reader(in)
	if b, _ := in.Peek(2); len(b) == 2 && b[0] == 0x1f && b[1] == 0x8b {
		gz, err := gzip.NewReader(in)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		src, rd.gzip = gz, true
	}
	// The modified format is translated into plain pcap before pcapgo sees
	// it; peek through a buffer that is then handed on.
	head := bufio.NewReaderSize(src, 64<<10)
	magic, err := head.Peek(4)
	if len(magic) < 4 {
		if len(magic) == 0 && (err == io.EOF || err == nil) {
			return nil, errors.New("empty file: no capture header")
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		return nil, fmt.Errorf("file too short for a capture header (%d bytes)", len(magic))
	}
	m := binary.LittleEndian.Uint32(magic)
	src = head
	switch m {
	case magicPcapModified, swap32(magicPcapModified):
		src = &modifiedPcap{r: head}
		rd.perRecord = 8
	case magicPcapng:
		src = &ngSections{r: head, warn: func(w string) { rd.warnings = append(rd.warnings, w) }}
	}
	rd.count.r = src
	rd.br = bufio.NewReaderSize(&rd.count, bufSize)

	switch m {
	case magicPcapng:
		ng, err := pcapgo.NewNgReader(rd.br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			if len(rd.warnings) > 0 && errors.Is(explain(err), ErrTruncated) {
				return nil, fmt.Errorf("no pcapng section kwl can read: %s", strings.Join(rd.warnings, "; "))
			}
			return nil, fmt.Errorf("pcapng section header: %w", explain(err))
		}
		rd.ng, rd.format = ng, "pcapng"
	case magicPcapMicro, magicPcapNano, magicPcapModified, swap32(magicPcapMicro), swap32(magicPcapNano), swap32(magicPcapModified):
		pr, err := pcapgo.NewReader(rd.br)
		if err != nil {
			return nil, fmt.Errorf("pcap header: %w", explain(err))
		}
		rd.pcap, rd.link = pr, LinkType(pr.LinkType())
		rd.fracScale = 1000
		rd.bigEndian = m>>24 == 0xd4 || m>>24 == 0x4d || m>>24 == 0x34
		if m == magicPcapNano || m == swap32(magicPcapNano) {
			rd.fracScale = 1
		}
		rd.maxCap = max(int(pr.Snaplen()), eagerReadMax)
		rd.format = "pcap"
		if m == magicPcapNano || m == swap32(magicPcapNano) {
			rd.format += ", nanosecond"
		}
		if m == magicPcapModified || m == swap32(magicPcapModified) {
			rd.format += ", modified"
		}
		if m>>24 == 0xd4 || m>>24 == 0x4d || m>>24 == 0x34 {
			rd.format += ", big-endian"
		}
		if !rd.link.Supported() {
			return nil, fmt.Errorf("unsupported %s: kwl reads Ethernet, Linux cooked (SLL, SLL2), raw IP, loopback and NFLOG captures", rd.link)
		}
	default:
		return nil, fmt.Errorf("not a pcap or pcapng file (it starts with % x)", magic)
	}
	if rd.gzip {
		rd.format += ", gzip"
	}
	return rd, nil
}

func swap32(v uint32) uint32 {
	return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24
}

// Format describes the file: "pcap", "pcap, nanosecond, big-endian",
// "pcapng", ... with ", gzip" when it was compressed.
func (r *Reader) Format() string { return r.format }

// Start returns the time of the capture's first packet, in UTC: the
// time that Packet.Time counts from. It is the zero time before the
// first packet is read.
func (r *Reader) Start() time.Time {
	if r.n == 0 {
		return time.Time{}
	}
	return r.first.UTC()
}

// Warnings lists what the reader passed over without failing (a pcapng
// section of an unknown version), each with its byte offset.
func (r *Reader) Warnings() []string { return r.warnings }

// Fragments reports what became of the capture's IP fragments so far:
// the reader reassembles them as the kernel does before the firewall
// sees them (Defrag), so that a datagram is one packet, the one its last
// fragment arrived in.
func (r *Reader) Fragments() FragStats { return r.defrag.Stats() }

// LinkType is the link type of a pcap file; pcapng files, whose
// interfaces each have their own, give LinkNull.
func (r *Reader) LinkType() LinkType { return r.link }

// Next reads the next packet into p. It returns io.EOF after the last
// packet, or an *Error when the file is broken; every later call returns
// the same. A packet that was read but cannot be evaluated (not IP,
// truncated, an unsupported link type on a pcapng interface, a fragment
// held for reassembly) is not an error: it comes back with p.Skipped set.
// Fragments are reassembled as the kernel does (Defrag): the packet
// that completes a datagram comes back as the whole datagram.
//
// p.Time is the time since the first packet; it may go backwards when the
// capture's timestamps do (several interfaces, a clock step).
func (r *Reader) Next(p *Packet) error {
	if r.err != nil {
		return r.err
	}
	off := r.offset()
	var (
		data []byte
		ci   gopacket.CaptureInfo
		err  error
		lt   = r.link
	)
	if r.ng != nil {
		data, ci, err = r.ng.ZeroCopyReadPacketData()
		if err == nil && len(ci.AncillaryData) > 0 {
			if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				lt = LinkType(l)
			}
		}
	} else {
		return r.nextPcap(p, off)
	}
	if err != nil {
		return r.fail(err, off)
	}
	r.n++
	if r.n == 1 {
		r.first = ci.Timestamp
	}
	p.N = r.n
	p.Time = ci.Timestamp.Sub(r.first)
	r.defrag.Decode(lt, data, p)
	return nil
}

// eagerReadMax is the longest record pcapgo reads into a buffer it
// allocates up front (libpcap's MAXIMUM_SNAPLEN); it also accepts records
// up to the file's snap length when that is larger
// (gopacket/pcapgo/readfull.go). It fits in bufSize, so such a record is
// read in place from br.
const eagerReadMax = 262144

// nextPcap is Next for a pcap file. It reads the records itself, in place
// in br, rather than through pcapgo.Reader.ZeroCopyReadPacketData, which
// copies every record out of the buffer and builds a time.Time for it:
// that was a third of the reader's time per packet. It takes and rejects
// exactly the records pcapgo does, with pcapgo's errors, and computes the
// same times (the corpus and fuzz tests hold it to that); pcapgo still
// reads the file header.
func (r *Reader) nextPcap(p *Packet, off int64) error {
	hdr, err := r.take(16)
	if err != nil {
		return r.fail(err, off)
	}
	// The fields in the file's byte order, without a call through
	// binary.ByteOrder per field.
	le := binary.LittleEndian
	s, f, c, l := le.Uint32(hdr[0:4]), le.Uint32(hdr[4:8]), le.Uint32(hdr[8:12]), le.Uint32(hdr[12:16])
	if r.bigEndian {
		s, f, c, l = bits.ReverseBytes32(s), bits.ReverseBytes32(f), bits.ReverseBytes32(c), bits.ReverseBytes32(l)
	}
	sec := int64(s)
	// pcapgo multiplies in uint32, which wraps for a microsecond field
	// above 4294967; keep its arithmetic so that times agree.
	nsec := int64(f * r.fracScale)
	caplen, length := int(c), int(l)
	if caplen > r.maxCap {
		return r.fail(fmt.Errorf("capture length exceeds snap length: %d > %d", caplen, r.pcap.Snaplen()), off)
	}
	if caplen > length {
		return r.fail(fmt.Errorf("capture length exceeds original packet length: %d > %d", caplen, length), off)
	}
	var data []byte
	if caplen <= eagerReadMax {
		data, err = r.take(caplen)
	} else {
		// Grow with the bytes actually read, so that a length field
		// cannot make the reader allocate what the file does not hold.
		r.big.Reset()
		var m int64
		m, err = io.CopyN(&r.big, r.br, int64(caplen))
		if err == io.EOF && m > 0 {
			err = io.ErrUnexpectedEOF
		}
		data = r.big.Bytes()
	}
	if err != nil {
		return r.fail(err, off)
	}
	// time.Unix(sec, nsec).Sub(first) without the time.Time: both are
	// below 2^32 seconds, so the difference in nanoseconds cannot overflow.
	ns := sec*1e9 + nsec
	r.n++
	if r.n == 1 {
		r.firstNs = ns
		r.first = time.Unix(0, ns)
	}
	p.N = r.n
	p.Time = time.Duration(ns - r.firstNs)
	r.defrag.Decode(r.link, data, p)
	return nil
}

// take returns the next n bytes (n <= bufSize) in place in br and moves
// past them, with io.ReadFull's errors when fewer are left.
func (r *Reader) take(n int) ([]byte, error) {
	b, err := r.br.Peek(n)
	if len(b) == n {
		r.br.Discard(n)
		return b, nil
	}
	r.br.Discard(len(b))
	if err == io.EOF && len(b) > 0 {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// fail records the error that ends the capture, as Next does for pcapgo's.
func (r *Reader) fail(err error, off int64) error {
	if err == io.EOF {
		r.err = io.EOF
		return io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		err = ErrTruncated
	}
	r.err = &Error{N: r.n + 1, Offset: off, Err: explain(err)}
	return r.err
}

// offset is the byte offset in the file of the next record.
func (r *Reader) offset() int64 {
	return r.count.n - int64(r.br.Buffered()) + int64(r.n)*r.perRecord
}

// explain turns pcapgo's terse errors into sentences a user can act on.
func explain(err error) error {
	switch {
	case errors.Is(err, pcapgo.ErrNgVersionMismatch):
		return errors.New("pcapng section of an unknown version (only 1.0 is defined)")
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return ErrTruncated
	}
	return err
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// modifiedPcap translates the modified pcap format (magic 0xa1b2cd34, from
// a patched libpcap once shipped by Red Hat and SuSE) into plain pcap: each
// record header has 8 more bytes (interface index, protocol, packet type,
// padding) after the standard 16, which libpcap skips (sf-pcap.c,
// PCAP_MODIFIED_MAGIC).
type modifiedPcap struct {
	r       io.Reader
	order   binary.ByteOrder
	started bool
	pending []byte // header bytes to hand out before more of the stream
	left    int64  // bytes of the current record's data still to copy
	hdr     [24]byte
}

func (m *modifiedPcap) Read(p []byte) (int, error) {
	for {
		if len(m.pending) > 0 {
			n := copy(p, m.pending)
			m.pending = m.pending[n:]
			return n, nil
		}
		if m.left > 0 {
			if int64(len(p)) > m.left {
				p = p[:m.left]
			}
			n, err := m.r.Read(p)
			m.left -= int64(n)
			return n, err
		}
		n, err := io.ReadFull(m.r, m.hdr[:24])
		if !m.started {
			if err != nil {
				return copy(p, m.hdr[:n]), io.ErrUnexpectedEOF
			}
			m.started = true
			m.order = binary.LittleEndian
			if binary.LittleEndian.Uint32(m.hdr[:4]) != magicPcapModified {
				m.order = binary.BigEndian
			}
			m.order.PutUint32(m.hdr[:4], magicPcapMicro)
			m.pending = m.hdr[:24]
			continue
		}
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			// Hand on what there is: pcapgo then sees the record cut short.
			return copy(p, m.hdr[:min(n, 16)]), io.EOF
		}
		m.left = int64(m.order.Uint32(m.hdr[8:12]))
		m.pending = m.hdr[:16]
	}
}

// ngSections passes a pcapng stream through unchanged, except for sections
// of an unknown major version, which it drops whole, as the pcapng
// specification asks of readers (draft-ietf-opsawg-pcapng, Section Header
// Block: "a reader ... should skip the section"), noting each in warn.
// It looks only at block headers; pcapgo checks everything else.
type ngSections struct {
	r      io.Reader
	off    int64 // offset in the input of the next byte to read
	left   int64 // bytes of the current block still to pass on
	skip   bool  // inside a section being dropped
	order  binary.ByteOrder
	hdr    [16]byte
	pend   []byte
	broken bool // a block header made no sense: pass the rest through for pcapgo to report
	warn   func(string)
	ifaces int   // interface description blocks in the current section
	err    error // a section of more than MaxInterfaces interfaces
}

// MaxInterfaces is the most interfaces a pcapng section may describe.
// The pcapng reader keeps every interface of a section, about a
// kilobyte each, so a file of nothing but interface blocks would take
// memory without bound; a capture with more interfaces than this is
// refused with an error at the block that passes the bound.
const MaxInterfaces = 4096

// ngInterfaceBlock is the block type of a pcapng interface description.
const ngInterfaceBlock = 1

func (s *ngSections) Read(p []byte) (int, error) {
	for {
		if s.err != nil {
			return 0, s.err
		}
		if len(s.pend) > 0 {
			n := copy(p, s.pend)
			s.pend = s.pend[n:]
			return n, nil
		}
		if s.broken || s.left > 0 {
			if !s.broken && int64(len(p)) > s.left {
				p = p[:s.left]
			}
			n, err := s.r.Read(p)
			s.off += int64(n)
			s.left -= int64(n)
			return n, err
		}
		start := s.off
		n, err := io.ReadFull(s.r, s.hdr[:8])
		s.off += int64(n)
		if err != nil {
			s.broken = true
			if n == 0 {
				return 0, io.EOF
			}
			s.pend = s.hdr[:n]
			continue
		}
		if binary.LittleEndian.Uint32(s.hdr[:4]) == magicPcapng {
			m, err := io.ReadFull(s.r, s.hdr[8:16])
			s.off += int64(m)
			if err != nil {
				s.broken, s.pend = true, s.hdr[:8+m]
				continue
			}
			switch binary.LittleEndian.Uint32(s.hdr[8:12]) {
			case 0x1a2b3c4d:
				s.order = binary.LittleEndian
			case 0x4d3c2b1a:
				s.order = binary.BigEndian
			default:
				s.broken, s.pend = true, s.hdr[:16]
				continue
			}
			length := int64(s.order.Uint32(s.hdr[4:8]))
			if length < 28 || length%4 != 0 {
				s.broken, s.pend = true, s.hdr[:16]
				continue
			}
			major, minor := s.order.Uint16(s.hdr[12:14]), s.order.Uint16(s.hdr[14:16])
			s.skip = major != 1
			if s.skip {
				s.warn(fmt.Sprintf("byte offset %d: pcapng section of unknown version %d.%d skipped", start, major, minor))
				if _, err := io.CopyN(io.Discard, s.r, length-16); err != nil {
					s.broken = true
					return 0, io.ErrUnexpectedEOF
				}
				s.off += length - 16
				continue
			}
			s.left, s.pend = length-16, s.hdr[:16]
			s.ifaces = 0
			continue
		}
		if s.order == nil {
			s.broken, s.pend = true, s.hdr[:8]
			continue
		}
		length := int64(s.order.Uint32(s.hdr[4:8]))
		if length < 12 || length%4 != 0 {
			s.broken, s.pend = true, s.hdr[:8]
			continue
		}
		if s.skip {
			if _, err := io.CopyN(io.Discard, s.r, length-8); err != nil {
				s.broken = true
				return 0, io.ErrUnexpectedEOF
			}
			s.off += length - 8
			continue
		}
		if s.order.Uint32(s.hdr[:4]) == ngInterfaceBlock {
			if s.ifaces++; s.ifaces > MaxInterfaces {
				s.err = fmt.Errorf("byte offset %d: pcapng section describes more than %d interfaces", start, MaxInterfaces)
				return 0, s.err
			}
		}
		s.left, s.pend = length-8, s.hdr[:8]
	}
}
