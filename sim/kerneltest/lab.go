//go:build linux

// Package kerneltest measures kwl's simulator against the Linux kernel.
//
// A Lab is a private pair of network namespaces: a firewall ("fw") that
// holds the compiled kwl ruleset and listeners on the scenario's ports, and
// a client ("cl") that sends the scenario's packets. They are joined by a
// veth pair; nothing else is connected, so no packet leaves the lab.
//
// Sending. The client namespace has no IP address at all. Packets are
// written whole (Ethernet, IPv4/IPv6, TCP/UDP) to an AF_PACKET socket on
// the client's veth end, so each scenario packet is exactly one frame with
// the source address, ports, flags and sequence numbers the scenario
// chose: the client kernel adds no retransmits, handshakes or RSTs of its
// own, and frames the firewall sends back are dropped by the client kernel
// (their destination is not local there) after the same socket has read
// them. The firewall has static neighbour entries for every source address
// a scenario uses, so its answers (SYN-ACKs, UDP echoes) reach the wire at
// once and conntrack sees them as replies.
//
// Verdicts. Each packet carries a tag unique in its scenario: the IPv4
// identification field, or the IPv6 flow label (fields no kwl rule reads).
// A probe table of the harness's own, `inet kwlprobe`, has base chains on
// the input and forward hooks at priority 1000, after kwl's chains (nft
// table `inet kwl` at filter priority 0, or the iptables-nft tables at 0),
// and adds the tag of every TCP/UDP packet it sees to a set. In netfilter a
// drop is final while an accept only ends its own base chain, so a tag in
// the set means kwl let the packet through and a missing tag means kwl (or
// the kernel before it) dropped it. The sets are read once, at the end of
// the scenario, with `nft -j list set`. This is exact for every packet,
// TCP or UDP, new or established, and needs no timing assumption; the
// SYN-ACKs read back on the client side are kept as a cross-check for TCP
// connection attempts (a SYN that passed has a listener behind it, so it
// must be answered).
//
// Timing. Packets are sent at their planned time since the scenario's
// start (time.Sleep, then one sendto). The simulator is given the time the
// firewall's kernel received each packet: the SO_TIMESTAMPNS stamp of its
// frame on a packet socket on the firewall's veth end, taken in the
// receive path just before netfilter runs, so a late send or a softirq
// deferred under load is measured, not guessed. Scenarios keep packets
// at least Margin away from any timing boundary (checked by perturbing the
// times through the simulator), and a run whose packets, as actually
// sent, come within SentMargin of a boundary is repeated rather than
// compared.
//
// Forwarded services. A policy with `forward to ADDR` gets a third
// namespace (AddInside) holding ADDR and the service's listeners behind a
// second veth; the firewall forwards, and the probe's forward chain sees
// what kwl's forward guard let through.
//
// The suite (go test ./sim/kerneltest/, as root; not root: skipped, or
// failed when KWL_KERNEL_TESTS=1):
//
//   - TestDifferential: the catalog (Catalog), 200 seeded random
//     scenarios (Generate; -kwl.random, -kwl.seed), and every test block
//     of examples/*.kwl (and, on nft, of examples/nft/*.kwl: secret
//     knocks, whose token sets both sides fill at the test's clock with
//     stand-in secrets, and whose steps carry the tokens as payloads)
//     whose timing allows, each on both backends in its
//     own lab, in parallel (-test.parallel defaults to 64 here: the
//     scenarios mostly wait). Per backend it logs scenarios, packets
//     compared and disagreements, then one summary line. A disagreement
//     fails the test with the packets up to it, the simulator's
//     explanation, a kwl test block with the kernel's verdicts
//     (Scenario.Repro) and a pcap of the firewall's side. The simulator's
//     prediction is kwl sim's replay (sim/replay) of the scenario's
//     packets with the lab hosts' answers, and the firewall's capture is
//     replayed too. A packet of a flow whose first packet was dropped,
//     which kwl sim reports as part of that blocked flow and never sent,
//     is sent here all the same, and the kernel evaluates it (conntrack
//     has no entry for it: a TCP packet without SYN is NEW, and a door
//     opened since may accept it). The replays evaluate those packets too
//     (replay.Replay.EvalBlocked), so every verdict is compared; the log
//     counts them and those the kernel accepted.
//   - TestCatalogKernel: the catalog on the kernel against SPEC.md's
//     semantics (Scenario.Want), which tests the lowering alone.
//   - TestKernelFacts: facts of KERNEL.md pinned with hand-written rulesets.
//   - TestTcpdumpReplay: the seed policy with short windows, per
//     backend, captured by a real tcpdump in the firewall's namespace and
//     replayed as `kwl sim --host ...` replays it (sim/replay), whose
//     verdict on every packet the client sent must be the kernel's.
//   - TestHarnessCatchesBrokenModel, TestDifferentialCatchesFlippedRule:
//     the comparison fails when the model is wrong.
//
// Namespaces are removed by the test that made them (checked with `ip
// netns list`), by a signal handler on SIGINT/SIGTERM/SIGHUP, and, for a
// run killed outright, by the next run (netns.RemoveStale).
package kerneltest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"kwl.dev/kwl/internal/netns"
	"kwl.dev/kwl/lang"
)

// Prefix starts the name of every namespace the harness creates.
const Prefix = "kwlk"

// Addresses of the firewall, from the documentation ranges (RFC 5737,
// RFC 3849). Scenario sources may be any address: the firewall routes
// everything over the veth and has a static neighbour entry per source.
var (
	FW4 = netip.MustParseAddr("198.51.100.1")
	FW6 = netip.MustParseAddr("2001:db8:51::1")
)

var (
	fwMAC = net.HardwareAddr{0x02, 0x6b, 0x77, 0x6c, 0x00, 0x01}
	clMAC = net.HardwareAddr{0x02, 0x6b, 0x77, 0x6c, 0x00, 0x02}
)

const (
	fwIf = "kwl0" // the firewall's end of the veth
	clIf = "kwl1" // the client's end
)

// Lab is a firewall namespace and a client namespace joined by a veth.
type Lab struct {
	FW, Client *netns.NS
	// Inside is the host behind the firewall (AddInside), or nil.
	Inside       *netns.NS
	insideAddr   netip.Addr
	insideListen []lang.Port
	wire         *wire // the client's sender
	capture      *wire // the firewall's capture
	listeners    *listeners
	neigh        map[netip.Addr]bool
}

// NewLab creates the namespaces, the veth pair, the firewall's addresses,
// routes and probe table, and the client's packet socket. Close removes
// everything.
func NewLab() (l *Lab, err error) {
	stem := netns.Group(Prefix)
	l = &Lab{neigh: map[netip.Addr]bool{}}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.FW, err = netns.New(stem + "-fw"); err != nil {
		return l, err
	}
	if l.Client, err = netns.New(stem + "-cl"); err != nil {
		return l, err
	}
	// Both ends are created inside the namespaces, never in the host's:
	// deleting the namespaces removes the pair whatever happens.
	batch := strings.Join([]string{
		fmt.Sprintf("link add %s address %s type veth peer name %s address %s netns %s", fwIf, fwMAC, clIf, clMAC, l.Client.Name),
		fmt.Sprintf("addr add %s/24 dev %s", FW4, fwIf),
		// nodad: the address is usable at once instead of after DAD.
		fmt.Sprintf("addr add %s/64 dev %s nodad", FW6, fwIf),
		fmt.Sprintf("link set %s up", fwIf),
		fmt.Sprintf("route add default dev %s", fwIf),
		fmt.Sprintf("route add ::/0 dev %s", fwIf),
	}, "\n") + "\n"
	if _, err = l.FW.RunInput([]byte(batch), "ip", "-b", "-"); err != nil {
		return l, err
	}
	// The client takes no part in IPv6 itself (no link-local address, no
	// router or neighbour solicitations): the only frames on the wire are
	// the scenario's and the firewall's answers.
	if _, err = l.Client.Run("sysctl", "-q", "-w", "net.ipv6.conf."+clIf+".disable_ipv6=1"); err != nil {
		return l, err
	}
	if _, err = l.Client.Run("ip", "link", "set", clIf, "up"); err != nil {
		return l, err
	}
	// The firewall answers every reject: the kernel rate-limits the ICMP
	// errors it sends, per destination (net.ipv4.icmp_ratelimit, 1s, and
	// net.ipv6.icmp.ratelimit: icmpv4_xrlim_allow, icmpv6_xrlim_allow)
	// and for the whole namespace (icmp_msgs_per_sec and icmp_msgs_burst,
	// 1000 and 50: icmp_global_allow), which would make a rejected packet
	// look dropped. TCP resets are not limited. The settings are the
	// namespace's own (net/ipv4/sysctl_net_ipv4.c, per-net tables).
	for _, kv := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
		"net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000"} {
		if _, err = l.FW.Run("sysctl", "-q", "-w", kv); err != nil {
			return l, err
		}
	}
	if _, err = l.FW.RunInput([]byte(probeRuleset), "nft", "-f", "-"); err != nil {
		return l, err
	}
	if l.capture, err = openWire(l.FW, fwIf); err != nil {
		return l, err
	}
	if l.wire, err = openWire(l.Client, clIf); err != nil {
		return l, err
	}
	return l, nil
}

// Close stops the listeners and the packet socket and deletes the
// namespaces. It is safe on a partly built Lab.
func (l *Lab) Close() error {
	if l.listeners != nil {
		l.listeners.close()
	}
	if l.wire != nil {
		l.wire.close()
	}
	if l.capture != nil {
		l.capture.close()
	}
	var errs []string
	for _, ns := range []*netns.NS{l.Inside, l.Client, l.FW} {
		if ns != nil {
			if err := ns.Delete(); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Capture returns the frames seen so far on the firewall's end of the
// veth, both directions, including those kwl dropped.
func (l *Lab) Capture() []Frame { return l.capture.Frames() }

// WritePcap writes frames as a pcap file (Ethernet link type).
func WritePcap(path string, frames []Frame) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: len(fr.Data)}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Neighbours adds static neighbour entries on the firewall for the given
// source addresses, so that its answers go straight to the client's MAC.
func (l *Lab) Neighbours(addrs []netip.Addr) error {
	var b bytes.Buffer
	var todo []netip.Addr
	for _, a := range addrs {
		if !l.neigh[a] {
			l.neigh[a] = true
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].Less(todo[j]) })
	for _, a := range todo {
		fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud permanent\n", a, clMAC, fwIf)
	}
	if _, err := l.FW.RunInput(b.Bytes(), "ip", "-b", "-"); err != nil {
		return err
	}
	return l.insideNeighbours()
}
