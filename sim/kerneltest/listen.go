//go:build linux

package kerneltest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/lang"
)

// listeners are the firewall's servers: a TCP listener on every TCP port
// of a scenario (so that an admitted SYN is answered with a SYN-ACK and
// conntrack sees the reply) and a UDP echo on every UDP port (so that an
// admitted datagram is answered and its flow becomes established). This is
// what kwl's test semantics assume: a host behind an accepted new
// connection answers. Without them the kernel would answer with a RST or
// an ICMP port unreachable, which does not establish the flow.
type listeners struct {
	mu    sync.Mutex
	tcp   []net.Listener
	udp   []net.PacketConn
	conns []net.Conn
	wg    sync.WaitGroup
}

// Listen starts servers in the firewall namespace on the given ports, on
// both families (a dual-stack socket on [::]).
func (l *Lab) Listen(ports []lang.Port) error {
	if l.listeners == nil {
		l.listeners = &listeners{}
	}
	ls := l.listeners
	return l.FW.Do(func() error {
		for _, p := range ports {
			if err := ls.listen(p.Proto, "[::]:"+strconv.Itoa(int(p.Num))); err != nil {
				return err
			}
		}
		return nil
	})
}

// listen starts one server in the calling thread's namespace.
func (ls *listeners) listen(proto lang.Proto, addr string) error {
	switch proto {
	case lang.TCP:
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen tcp %s: %w", addr, err)
		}
		ls.tcp = append(ls.tcp, ln)
		ls.wg.Add(1)
		go ls.accept(ln)
	case lang.UDP:
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("listen udp %s: %w", addr, err)
		}
		ls.udp = append(ls.udp, pc)
		ls.wg.Add(1)
		go ls.echo(pc)
	}
	return nil
}

func (ls *listeners) accept(ln net.Listener) {
	defer ls.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Keep the connection open (no FIN) until the lab closes: a
		// scenario's established flows stay established.
		ls.mu.Lock()
		ls.conns = append(ls.conns, c)
		ls.mu.Unlock()
	}
}

func (ls *listeners) echo(pc net.PacketConn) {
	defer ls.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// pump answers, from the calling goroutine, every datagram waiting on
// the UDP servers, and returns at once. The replay calls it right after
// each packet it sends: the datagram reaches the server's socket in the
// receive path of the frame, within the send, and an echo left to the
// server's goroutine comes as late as a busy Go scheduler runs it
// (hundreds of milliseconds were seen), while the model takes every
// admitted datagram as answered before the next packet, which a
// retransmit at the same instant puts to the test. The goroutine stays
// for what the pump misses (a receive deferred to ksoftirqd).
func (ls *listeners) pump() {
	ls.mu.Lock()
	udp := ls.udp
	ls.mu.Unlock()
	var buf [2048]byte
	for _, pc := range udp {
		sc, ok := pc.(syscall.Conn)
		if !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			for {
				n, from, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT)
				if err != nil {
					return
				}
				unix.Sendto(int(fd), buf[:n], unix.MSG_DONTWAIT, from)
			}
		})
	}
}

func (ls *listeners) close() {
	for _, ln := range ls.tcp {
		ln.Close()
	}
	for _, pc := range ls.udp {
		pc.Close()
	}
	ls.wg.Wait()
	ls.mu.Lock()
	for _, c := range ls.conns {
		c.Close()
	}
	ls.mu.Unlock()
}
