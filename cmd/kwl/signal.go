package main

import (
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// onInterrupt calls stop, once, on the first SIGINT or SIGTERM, instead
// of the process dying of it. interrupted reports whether one came;
// release restores the default handling.
func onInterrupt(stop func()) (interrupted func() bool, release func()) {
	var got atomic.Bool
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			got.Store(true)
			stop()
		case <-done:
		}
	}()
	return got.Load, func() {
		signal.Stop(ch)
		close(done)
	}
}
