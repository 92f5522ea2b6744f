package sink

import (
	"context"
	"time"
)

// wakeWhenDone wakes the calls blocked on a connection when ctx ends, by giving it a
// deadline in the past through setDeadline (the connection's SetDeadline, or
// SetWriteDeadline to wake its writes only), and returns what stops that, as
// context.AfterFunc does.
//
// A Read or Write on a net.Conn takes no context: it returns when data moves, when the
// connection closes, or when its deadline passes. A deadline already past makes the call
// under way, and every later one, fail at once with os.ErrDeadlineExceeded, and leaves the
// connection to its owner, who closes it or sets a new deadline before using it again.
// Any time in the past does: time.Unix(1, 0), since the zero time means no deadline.
func wakeWhenDone(ctx context.Context, setDeadline func(time.Time) error) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = setDeadline(time.Unix(1, 0)) })
}
