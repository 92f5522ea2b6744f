package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// untilSignalled is parent until the first SIGTERM or SIGINT, which cancels it so that the
// command ends gracefully; a second signal kills the process (the default action is back
// by then). onSignal, when set, is told of the first one. Call stop when the command returns.
func untilSignalled(parent context.Context, onSignal func()) (ctx context.Context, stop context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop = signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
	context.AfterFunc(ctx, func() {
		stop()
		if onSignal != nil && parent.Err() == nil && context.Cause(ctx) != context.Canceled { // a signal, not the return
			onSignal()
		}
	})
	return ctx, stop
}
