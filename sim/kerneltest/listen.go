//go:build linux

package kerneltest

import (
	"fmt"
	"net"
	"strconv"
	"sync"

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
