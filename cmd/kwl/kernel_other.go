//go:build !linux

package main

// The commands that read or load the kernel's ruleset (deploy, status,
// undeploy, restore) talk nf_tables over netlink, or run iptables: they
// exist on Linux only. Elsewhere they show their help and otherwise say so
// and exit 2; check, test, compile, sim and fmt are pure computation and
// work on every system.

// runWatchdog does nothing: there is no deploy to watch.
func runWatchdog() {}

func runDeploy(env *cmdEnv, args []string) int   { return needLinux(env, "deploy", args) }
func runStatus(env *cmdEnv, args []string) int   { return needLinux(env, "status", args) }
func runUndeploy(env *cmdEnv, args []string) int { return needLinux(env, "undeploy", args) }
func runRestore(env *cmdEnv, args []string) int  { return needLinux(env, "restore", args) }
func runUnban(env *cmdEnv, args []string) int    { return needLinux(env, "unban", args) }
func runRevoke(env *cmdEnv, args []string) int   { return needLinux(env, "revoke", args) }
