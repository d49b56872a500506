// Package client sends the knocks that open a door of a policy, from the
// same policy file the firewall runs: one source of truth for server and
// client (kwl knock).
//
// A TCP knock is one SYN and no more: a connection attempt given up
// before the kernel's first retransmission (after its initial RTO of one
// second), as knockd's knock client does. A UDP knock is an empty
// datagram; a secret knock's is the token of the current window (Sign),
// derived from the secret file the policy names.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// A Plan is what Send sends to open one door of a service on a host.
type Plan struct {
	Door    *lang.Door
	Host    netip.Addr
	Knocks  []lang.Port
	Gap     time.Duration // between two knocks
	Service lang.Port     // the port the door opens, to connect to after
	// Token, for a secret door, is the payload of its one datagram
	// (Sign), of window Window; nil until signed.
	Token  *[secret.TokenSize]byte
	Window int64
}

// Sign gives a secret door's plan the token of window w under the
// secret key (State.Window says which). A plan of another door needs
// none.
func (pl *Plan) Sign(key []byte, w int64) {
	pl.Window = w
	tok := secret.Token(key, w)
	pl.Token = &tok
}

// MaxSYNWait is how long a TCP knock waits before it gives its
// connection attempt up: less than the kernel's initial retransmission
// timeout (TCP_TIMEOUT_INIT, one second), so that one SYN is sent.
const MaxSYNWait = 500 * time.Millisecond

// PlanFor returns the plan that opens service (or, when service is empty,
// the policy's only service with doors) on host: the first door of the
// service that host's family reaches, its knocks gap apart. It refuses a
// gap that the door's windows do not allow.
func PlanFor(p *lang.Policy, service string, host netip.Addr, gap time.Duration) (*Plan, error) {
	var names []string
	for _, d := range p.Doors {
		if !slices.Contains(names, d.Service.Name) {
			names = append(names, d.Service.Name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("the policy has no knock that opens a service")
	}
	if service == "" {
		if len(names) > 1 {
			return nil, fmt.Errorf("the policy's knocks open %s: name one", strings.Join(names, ", "))
		}
		service = names[0]
	}
	if !slices.Contains(names, service) {
		return nil, fmt.Errorf("no knock of the policy opens %s (its knocks open %s)", service, strings.Join(names, ", "))
	}
	host = host.Unmap()
	var why []string
	for _, d := range p.Doors {
		if d.Service.Name != service {
			continue
		}
		if d.Family == lang.IPv6 && host.Is4() || d.Family == lang.IPv4 && host.Is6() {
			why = append(why, fmt.Sprintf("%s: for %s only", d.Pos, map[bool]string{true: "IPv6", false: "IPv4"}[d.Family == lang.IPv6]))
			continue
		}
		n := len(d.Sequence)
		if d.Within > 0 && gap > d.Within {
			return nil, fmt.Errorf("%s: each knock must follow the previous within %v: a gap of %v is too long (--gap)", d.Pos, d.Within, gap)
		}
		if d.Span > 0 && time.Duration(n-1)*gap > d.Span {
			return nil, fmt.Errorf("%s: the %d knocks must be sent within %v: a gap of %v is too long (--gap)", d.Pos, n, d.Span, gap)
		}
		return &Plan{Door: d, Host: host, Knocks: d.Sequence, Gap: gap, Service: d.Service.Ports[0]}, nil
	}
	return nil, fmt.Errorf("no knock of %s reaches %s: %s", service, host, strings.Join(why, "; "))
}

// Steps describes the plan's packets, one a line, as kwl knock --dry-run
// prints them.
func (pl *Plan) Steps() []string {
	var out []string
	for i, k := range pl.Knocks {
		what := "a SYN"
		switch {
		case pl.Token != nil:
			// Not the token itself: it opens the door, once, for
			// whoever sends it first.
			end := secret.Start(pl.Window+1, lang.TokenWindow).Format(time.TimeOnly)
			what = fmt.Sprintf("a datagram of the token of window %d (until %s UTC)", pl.Window, end)
		case pl.Door.Secret != nil:
			what = "a datagram of the token of the current window"
		case k.Proto == lang.UDP:
			what = "an empty datagram"
		}
		at := ""
		if i > 0 {
			at = fmt.Sprintf(" %v later", pl.Gap)
		}
		out = append(out, fmt.Sprintf("%s to %s %s%s", what, k.Proto, addrPort(pl.Host, k.Num), at))
	}
	return out
}

func addrPort(a netip.Addr, port uint16) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
}

// Send sends the plan's knocks, calling sent after each.
func Send(ctx context.Context, pl *Plan, sent func(i int)) error {
	for i, k := range pl.Knocks {
		if i > 0 {
			if err := sleep(ctx, pl.Gap-waited(k, pl.Gap)); err != nil {
				return err
			}
		}
		var payload []byte
		if pl.Door.Secret != nil {
			if pl.Token == nil {
				return fmt.Errorf("%s: a secret knock's plan must be signed", pl.Door.Pos)
			}
			payload = pl.Token[:]
		}
		if err := knock(ctx, pl.Host, k, pl.Gap, payload); err != nil {
			return err
		}
		if sent != nil {
			sent(i)
		}
	}
	return nil
}

// waited is how much of the gap a knock spends itself: a TCP knock's
// wait for its SYN.
func waited(k lang.Port, gap time.Duration) time.Duration {
	if k.Proto == lang.TCP {
		return min(gap, MaxSYNWait)
	}
	return 0
}

// knock sends one knock to port of host; a UDP knock carries payload.
func knock(ctx context.Context, host netip.Addr, port lang.Port, gap time.Duration, payload []byte) error {
	addr := addrPort(host, port.Num)
	if port.Proto == lang.UDP {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}
	// Dial gives the attempt up after its one SYN; a drop is what a knock
	// port does, so the timeout is the expected end. A port that answers
	// (a knock that passes on to a service) is closed at once.
	wait, cancel := context.WithTimeout(ctx, min(gap, MaxSYNWait))
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(wait, "tcp", addr)
	if err == nil {
		c.Close()
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Given up after its SYN (the dial's own deadline, which the net
	// package sets from the context's and may reach before the context
	// reports it), or refused (a knock port with reject): sent.
	var ne net.Error
	if wait.Err() != nil || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
