//go:build linux

package kerneltest

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
	"kwl.dev/kwl/sim"
)

// newModel returns the simulator of a backend for a policy and its lowered
// ruleset, or nil while the simulator is not built in (then only the
// kernel runs, against the scenarios' expectations).
var newModel = func(backend string, pol *lang.Policy, n *nft.Ruleset, i *iptables.Ruleset, clock time.Time) Model {
	return nil
}

// Backends are the backends every scenario runs on.
var Backends = []string{"nft", "iptables"}

// targets compiles a scenario's policy for each backend it runs on.
func targets(sc *Scenario) ([]Target, error) {
	pol, diags := lang.Load(sc.Name+".kwl", []byte(sc.Policy))
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %v", sc.Name, diags)
	}
	return targetsFor(sc, pol)
}

func targetsFor(sc *Scenario, pol *lang.Policy) ([]Target, error) {
	var tgs []Target
	for _, b := range Backends {
		if !sc.For(b) {
			continue
		}
		tg, err := target(b, pol, sc.SetSize, sc.Clock)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", sc.Name, b, err)
		}
		tgs = append(tgs, tg)
	}
	return tgs, nil
}

// target lowers pol for a backend: the ruleset the lab loads, with its
// token sets filled at clock with stand-in secrets for the coming
// sim.DefaultHorizon, as the simulator fills its own, and the model.
func target(backend string, pol *lang.Policy, setSize int, clock time.Time) (Target, error) {
	switch backend {
	case "nft":
		rs, diags := nft.Lower(pol)
		if diags.HasErrors() {
			return Target{}, diags.Err()
		}
		if setSize > 0 {
			for _, s := range rs.Table.Sets {
				s.Size = setSize
			}
		}
		for _, s := range rs.Table.Sets {
			if s.Tokens != nil {
				from, to := s.Tokens.Windows(clock, sim.DefaultHorizon)
				s.Elements = s.Tokens.Elements(secret.StandIn(s.Tokens.Secret), clock, from, to)
			}
		}
		text, err := rs.Render()
		if err != nil {
			return Target{}, err
		}
		return Target{
			Backend: backend,
			Load: func(l *Lab) error {
				if err := l.LoadNft(text); err != nil {
					return err
				}
				return addInside(l, pol)
			},
			Model: newModel(backend, pol, rs, nil, clock),
		}, nil
	case "iptables":
		rs, diags := iptables.Lower(pol)
		if diags.HasErrors() {
			return Target{}, diags.Err()
		}
		v4, v6, err := rs.Render()
		if err != nil {
			return Target{}, err
		}
		return Target{
			Backend: backend,
			Load: func(l *Lab) error {
				if err := l.LoadIptables(v4, v6); err != nil {
					return err
				}
				return addInside(l, pol)
			},
			Model: newModel(backend, pol, nil, rs, clock),
		}, nil
	}
	return Target{}, fmt.Errorf("unknown backend %q", backend)
}

// addInside adds the host behind the firewall that the policy's forwarded
// services run on. The lab has room for one such host.
func addInside(l *Lab, pol *lang.Policy) error {
	var addr netip.Addr
	var ports []lang.Port
	for _, s := range pol.Services {
		if !s.Forward.IsValid() {
			continue
		}
		if addr.IsValid() && s.Forward != addr {
			return fmt.Errorf("services forwarded to %s and %s: the lab has one inside host", addr, s.Forward)
		}
		addr = s.Forward
		ports = append(ports, s.Ports...)
	}
	if !addr.IsValid() {
		return nil
	}
	return l.AddInside(addr, ports)
}
