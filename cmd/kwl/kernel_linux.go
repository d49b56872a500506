//go:build linux

package main

import "kwl.dev/kwl/deploy"

// runWatchdog becomes a deploy's watchdog, and never returns, when kwl was
// started as one by a deploy waiting for confirmation (deploy.RunWatchdog);
// otherwise it returns at once.
func runWatchdog() { deploy.RunWatchdog() }
