//go:build !linux

package connector

// idleWaiter is Linux's (idlewait_linux.go): elsewhere every connection's reader starts at
// once.
type idleWaiter struct{ c *Connector }

func (*idleWaiter) park(*conversation, *streamSocket) bool     { return false }
func (*idleWaiter) parkable(*conversation, *streamSocket) bool { return false }
func (*idleWaiter) unpark(*streamSocket)                       {}
func (*idleWaiter) stop()                                      {}
