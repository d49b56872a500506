//go:build linux

package deploy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/deploy/nftnl"
)

// target is the network namespace deploy works in, and the netlink
// connections it uses there: google/nftables for reading, and a raw
// nfnetlink socket for batches, whose replies deploy must match to the
// messages it sent (google/nftables joins the errors of a batch and drops
// which message each belongs to).
type target struct {
	nsfd int // -1: the namespace of the process
	nft  *nftables.Conn
}

// NetNSDir is where named network namespaces live (ip-netns(8)).
const NetNSDir = "/run/netns"

func openTarget(netns string) (*target, error) {
	t := &target{nsfd: -1}
	var opts []nftables.ConnOption
	if netns != "" {
		p := netns
		if !filepath.IsAbs(p) {
			p = filepath.Join(NetNSDir, netns)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", netns, err)
		}
		t.nsfd = fd
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.close()
		return nil, err
	}
	t.nft = c
	return t, nil
}

func (t *target) close() {
	if t.nsfd >= 0 {
		unix.Close(t.nsfd)
		t.nsfd = -1
	}
}

func (t *target) dial() (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if t.nsfd >= 0 {
		cfg.NetNS = t.nsfd
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, classify(fmt.Errorf("netlink: %w", err))
	}
	return c, nil
}

// ErrPermission is returned when the process may not change the
// firewall: it needs CAP_NET_ADMIN in the target namespace (root).
var ErrPermission = errors.New("changing the firewall needs CAP_NET_ADMIN: run kwl as root")

// ErrNoNftables is returned when the kernel has no nf_tables.
var ErrNoNftables = errors.New("the kernel has no nf_tables (load the nf_tables module, or use --backend iptables)")

// classify turns the errno of a refused request into the errors above.
func classify(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (%v)", ErrPermission, err)
	case errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("%w (%v)", ErrNoNftables, err)
	}
	return err
}

// MsgError is the kernel's reply to one message of a refused batch.
type MsgError struct {
	Note  nftnl.Note
	Errno syscall.Errno
	// Message is the kernel's extended acknowledgement, when it gave one.
	Message string
}

func (e *MsgError) Error() string {
	s := ""
	if e.Note.Origin != (nftnl.Note{}).Origin {
		s = e.Note.Origin.String() + ": "
	}
	s += e.Note.What + ": " + e.Errno.Error()
	if e.Message != "" {
		s += " (" + e.Message + ")"
	}
	return s
}

// BatchError is a batch the kernel refused as a whole: nothing of it was
// applied (nfnetlink aborts the transaction). Errs lists the replies of
// the messages that failed, in batch order; the first is the cause, the
// others may follow from it.
type BatchError struct {
	Errs []*MsgError
	// Unmatched is set when the kernel reported an error that could not
	// be traced to a message of the batch.
	Unmatched error
}

func (e *BatchError) Error() string {
	if len(e.Errs) == 0 {
		return fmt.Sprintf("the kernel refused the ruleset (nothing was changed): %v", e.Unmatched)
	}
	first := e.Errs[0]
	msg := "the kernel refused the ruleset (nothing was changed): " + first.Error()
	if first.Note.Origin == (nftnl.Note{}).Origin && first.Note.Chain == "" {
		msg += " [not a rule of a statement: the failing message is " + first.Note.What + "]"
	}
	if n := len(e.Errs) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more error(s) after it)", n)
	}
	return msg
}

// send sends the messages of b as one nfnetlink batch (one transaction)
// and matches the kernel's replies to them.
//
// nfnetlink processes a batch inside the sendmsg call and queues its
// replies before the call returns (net/netfilter/nfnetlink.c,
// nfnetlink_rcv_batch, which reports every failing message and aborts
// the whole batch if any failed), so the replies are read without
// waiting once the send is done. Only the last message asks for an
// acknowledgement: errors are reported whether asked for or not.
func (t *target) send(b *nftnl.Batch) error {
	if len(b.Msgs) == 0 {
		return nil
	}
	c, err := t.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	msgs := make([]netlink.Message, 0, len(b.Msgs)+2)
	const seq0 = 1
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request, Sequence: seq0},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
	size := 64
	for i, m := range b.Msgs {
		m.Header.Sequence = uint32(seq0 + 1 + i)
		// google/nftables asks for an echo of each new rule (to learn
		// its handle); kwl needs none, and thousands of echoes would
		// overflow the socket.
		m.Header.Flags &^= netlink.Acknowledge | netlink.Echo
		if i == len(b.Msgs)-1 {
			m.Header.Flags |= netlink.Acknowledge
		}
		m.Header.Length = 0
		size += 16 + len(m.Data) + 4
		msgs = append(msgs, m)
	}
	last := uint32(seq0 + len(b.Msgs))
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request, Sequence: last + 1},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	})
	// A batch is one datagram: the socket's send buffer must hold it
	// (netlink_sendmsg refuses larger messages with EMSGSIZE), as nft
	// sizes its own (src/mnl.c, mnl_set_sndbuffer). Replies are few.
	var soErr error
	raw.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size+4096); e != nil {
			soErr = e
		}
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
		unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
		unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	})
	if soErr != nil {
		return classify(fmt.Errorf("netlink send buffer: %w", soErr))
	}
	if _, err := c.SendMessages(msgs); err != nil {
		return classify(fmt.Errorf("send batch: %w", err))
	}
	replies, rerr := drain(raw)
	be := &BatchError{}
	acked := false
	for _, r := range replies {
		if r.errno == 0 {
			if r.seq == last {
				acked = true
			}
			continue
		}
		if r.seq > seq0 && r.seq <= last {
			be.Errs = append(be.Errs, &MsgError{Note: b.Notes[r.seq-seq0-1], Errno: r.errno, Message: r.msg})
			continue
		}
		e := error(r.errno)
		if r.msg != "" {
			e = fmt.Errorf("%w (%s)", r.errno, r.msg)
		}
		be.Unmatched = classify(e)
	}
	if be.Unmatched != nil && len(be.Errs) == 0 {
		if errors.Is(be.Unmatched, ErrPermission) {
			return be.Unmatched
		}
		return be
	}
	if len(be.Errs) > 0 {
		if be.Errs[0].Errno == unix.EPERM {
			return classify(be.Errs[0].Errno)
		}
		return be
	}
	if rerr != nil {
		return fmt.Errorf("reading the kernel's replies: %w (the batch may or may not have been applied)", rerr)
	}
	if !acked {
		return fmt.Errorf("the kernel did not acknowledge the batch (the batch may or may not have been applied)")
	}
	return nil
}

type reply struct {
	seq   uint32
	errno syscall.Errno
	msg   string
}

// drain reads every queued reply without waiting.
func drain(raw syscall.RawConn) ([]reply, error) {
	var out []reply
	var rerr error
	buf := make([]byte, 1<<16)
	err := raw.Control(func(fd uintptr) {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
				return
			}
			if err == unix.EINTR {
				continue
			}
			if err == unix.ENOBUFS {
				// Replies were dropped; read on what remains.
				rerr = err
				continue
			}
			if err != nil {
				rerr = err
				return
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				rerr = err
				return
			}
			for _, m := range msgs {
				if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4+16 {
					continue
				}
				r := reply{
					errno: syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4]))),
					seq:   binary.NativeEndian.Uint32(m.Data[4+8 : 4+12]),
				}
				if m.Header.Flags&unix.NLM_F_ACK_TLVS != 0 {
					off := 4 + 16
					if m.Header.Flags&unix.NLM_F_CAPPED == 0 {
						off = 4 + int(binary.NativeEndian.Uint32(m.Data[4:8]))
					}
					if off <= len(m.Data) {
						if ad, err := netlink.NewAttributeDecoder(m.Data[off:]); err == nil {
							for ad.Next() {
								if ad.Type() == unix.NLMSGERR_ATTR_MSG {
									r.msg = ad.String()
								}
							}
						}
					}
				}
				out = append(out, r)
			}
		}
	})
	if err != nil {
		return out, err
	}
	return out, rerr
}

// hasNetAdmin reports whether the process has CAP_NET_ADMIN in its effective
// set (bit 12 of CapEff in /proc/self/status).
func hasNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	var capEff uint64
	for _, line := range splitLines(string(b)) {
		if len(line) > 7 && line[:7] == "CapEff:" {
			fmt.Sscanf(line[7:], "%x", &capEff)
			return capEff&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return os.Geteuid() == 0
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
