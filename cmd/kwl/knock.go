package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"kwl.dev/kwl/client"
	"kwl.dev/kwl/secret"
)

func runKnock(env *cmdEnv, args []string) int {
	c := commands["knock"]
	fs := c.newFlags(env)
	policy := fs.String("policy", "", "the policy `FILE` the firewall runs (required)")
	gap := fs.Duration("gap", 200*time.Millisecond, "time between two knocks")
	dry := fs.Bool("dry-run", false, "print what would be sent, send nothing")
	only4 := fs.Bool("4", false, "knock over IPv4 only")
	only6 := fs.Bool("6", false, "knock over IPv6 only")
	secretFile := fs.String("secret", "", "read a secret knock's secret from `FILE` (default: the file the policy names)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *policy == "" || fs.NArg() < 1 || fs.NArg() > 2 || *gap <= 0 || *only4 && *only6 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help knock' for more.\n", c.usage)
		return exitUsage
	}
	pol, code := loadPolicy(env, "knock", *policy)
	if pol == nil {
		return code
	}
	network := "ip"
	if *only4 {
		network = "ip4"
	} else if *only6 {
		network = "ip6"
	}
	host, err := resolve(fs.Arg(0), network)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl knock: %v\n", err)
		return exitUsage
	}
	plan, err := client.PlanFor(pol, fs.Arg(1), host, *gap)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl knock: %v\n", err)
		return exitFail
	}
	var state *client.State
	if d := plan.Door; d.Secret != nil && !*dry {
		path := d.Secret.Path
		if *secretFile != "" {
			path = *secretFile
		}
		key, err := secret.Read(path)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl knock: %s: %v\n", d.Pos, err)
			return exitFail
		}
		if state, err = knockState(); err == nil {
			var w int64
			if w, err = state.Window(client.Key(key, plan), time.Now()); err == nil {
				plan.Sign(key, w)
			}
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl knock: %v\n", err)
			return exitFail
		}
	}
	steps := plan.Steps()
	svc := fmt.Sprintf("%s (%s/%d on %s) for %v", plan.Door.Service.Name, plan.Service.Proto, plan.Service.Num, plan.Host, plan.Door.Lifetime)
	if *dry {
		for _, s := range steps {
			fmt.Fprintf(env.stdout, "would send %s\n", s)
		}
		fmt.Fprintf(env.stdout, "which opens %s (%s)\n", svc, plan.Door.Pos)
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err = client.Send(ctx, plan, func(i int) { fmt.Fprintf(env.stdout, "sent %s\n", steps[i]) })
	if state != nil {
		// A token sent, or perhaps sent, is spent: the next knock sends
		// another.
		if serr := state.Save(); serr != nil {
			fmt.Fprintf(env.stderr, "kwl knock: warning: %v: the next knock in this window may send the same token, which opens nothing\n", serr)
		}
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl knock: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(env.stdout, "knocked: %s should be open to you now\n", svc)
	return exitOK
}

// knockState loads kwl knock's record of the tokens it sent.
func knockState() (*client.State, error) {
	path, err := client.StatePath()
	if err != nil {
		return nil, err
	}
	return client.LoadState(path)
}

// resolve returns the address of host, an address or a name, in network
// (ip, ip4 or ip6).
func resolve(host, network string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if network == "ip4" && !a.Unmap().Is4() || network == "ip6" && a.Unmap().Is4() {
			return netip.Addr{}, fmt.Errorf("%s is not an %s address", host, map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[network])
		}
		return a, nil
	}
	as, err := net.DefaultResolver.LookupNetIP(context.Background(), network, host)
	if err != nil {
		return netip.Addr{}, err
	}
	return as[0], nil
}
