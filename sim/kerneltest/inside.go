//go:build linux

package kerneltest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

var (
	fwInMAC = net.HardwareAddr{0x02, 0x6b, 0x77, 0x6c, 0x00, 0x03}
	inMAC   = net.HardwareAddr{0x02, 0x6b, 0x77, 0x6c, 0x00, 0x04}
)

const (
	fwInIf = "kwl2" // the firewall's end of the inside link
	inIf   = "kwl3" // the inside host's end
)

// AddInside adds a host behind the firewall, in a namespace of its own
// joined to the firewall by a second veth, for services that kwl forwards
// (DNAT) to an internal address. The host has the address addr and runs
// listeners on ports; the firewall forwards, routes addr over the link and
// knows the host's MAC, and the host sends everything back through the
// firewall. The probe's forward chain records what kwl let through.
func (l *Lab) AddInside(addr netip.Addr, ports []lang.Port) error {
	if l.Inside != nil {
		return fmt.Errorf("lab already has an inside host")
	}
	var err error
	if l.Inside, err = netns.New(l.FW.Name[:len(l.FW.Name)-len("-fw")] + "-in"); err != nil {
		return err
	}
	bits := 32
	family := "-4"
	if !addr.Is4() {
		bits, family = 128, "-6"
	}
	fw := fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s\n", fwInIf, fwInMAC, inIf, inMAC, l.Inside.Name) +
		fmt.Sprintf("link set %s up\n", fwInIf) +
		fmt.Sprintf("route add %s/%d dev %s\n", addr, bits, fwInIf) +
		fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent\n", addr, inMAC, fwInIf)
	if _, err := l.FW.RunInput([]byte(fw), "ip", "-b", "-"); err != nil {
		return err
	}
	if _, err := l.FW.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return err
	}
	in := fmt.Sprintf("addr add %s/%d dev %s nodad\n", addr, bits, inIf) +
		fmt.Sprintf("link set %s up\n", inIf) +
		fmt.Sprintf("route add default dev %s\n", inIf)
	if _, err := l.Inside.RunInput([]byte(in), "ip", family, "-b", "-"); err != nil {
		return err
	}
	l.insideAddr = addr
	l.insideListen = ports
	return l.insideNeighbours()
}

// insideNeighbours gives the inside host a static neighbour entry for
// every source address the firewall knows: they are all reached through
// the firewall's MAC on the inside link.
func (l *Lab) insideNeighbours() error {
	if l.Inside == nil {
		return nil
	}
	var b bytes.Buffer
	for a := range l.neigh {
		if a.Is4() == l.insideAddr.Is4() {
			fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud permanent\n", a, fwInMAC, inIf)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := l.Inside.RunInput(b.Bytes(), "ip", "-b", "-")
	return err
}

// listenInside starts the inside host's servers.
func (l *Lab) listenInside() error {
	if l.Inside == nil || len(l.insideListen) == 0 {
		return nil
	}
	if l.listeners == nil {
		l.listeners = &listeners{}
	}
	ls := l.listeners
	return l.Inside.Do(func() error {
		for _, p := range l.insideListen {
			addr := "[::]:" + strconv.Itoa(int(p.Num))
			if err := ls.listen(p.Proto, addr); err != nil {
				return fmt.Errorf("inside: %w", err)
			}
		}
		l.insideListen = nil
		return nil
	})
}
