//go:build linux

package main

import (
	"context"
	"fmt"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/deploy"
)

// deployIptables loads the iptables backend's ruleset (kwl deploy
// --backend iptables).
func deployIptables(env *cmdEnv, o deploy.Options, rs *iptables.Ruleset) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if o.Confirm > 0 && !o.DryRun {
		var stop func()
		o.Confirmed, stop = confirmInput(env, cancel)
		defer stop()
	}
	res, err := deploy.ApplyIptables(ctx, o, rs)
	if res != nil && o.DryRun {
		for _, c := range res.Changes {
			fmt.Fprintln(env.stdout, c)
		}
		if len(res.Changes) == 0 {
			fmt.Fprintln(env.stdout, "no change")
		}
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
		return exitFail
	}
	if !o.DryRun {
		kept := 0
		for _, n := range res.Kept {
			kept += n
		}
		fmt.Fprintf(env.stderr, "kwl deploy: iptables rules loaded (%d change(s), one commit per table; %d recent list entr(ies) kept)\n", len(res.Changes), kept)
	}
	return exitOK
}
