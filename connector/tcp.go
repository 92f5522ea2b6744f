package connector

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// Retries after a temporary accept or read error wait firstRetry, then twice as long each
// time, up to maxRetry, as net/http's Server does; a success starts over.
const (
	firstRetry = 5 * time.Millisecond
	maxRetry   = time.Second
)

// Serve accepts connections on ln and holds their conversations, until Shutdown or Close
// (then it returns ErrServerClosed) or an accept error that is not temporary, which it
// returns. Temporary errors (out of file descriptors, a connection aborted before it was
// accepted) are recorded as Error activities and retried after a pause that doubles from
// 5ms to 1s. ln is TCP (with TLS if the rules ask), or DTLS for rules on UDP with
// operation.tls; Serve closes it when it returns. It serves at once: executionDelay is
// ListenAndServe's.
func (c *Connector) Serve(ln net.Listener) error {
	p := c.current.Load().prog
	err := c.checkTLS(p)
	switch {
	case p.Mode == v1alpha1.ModeClient:
		err = errors.New("connector: the rules are in client mode: use RunClients")
	case p.Transport == v1alpha1.TransportUDP && !p.TLS.Enabled:
		err = errors.New("connector: the rules are on UDP: use ServePacket")
	}
	if err != nil {
		_ = ln.Close()
		return err
	}
	if !c.serving.add() {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer c.serving.done()
	return c.serve(ln, p)
}

// serve runs the accept loop of ln for a serving call.
func (c *Connector) serve(ln net.Listener, p *rules.Program) error {
	defer ln.Close()
	if !c.trackListener(ln) {
		return ErrServerClosed
	}
	defer c.untrackListener(ln)
	if !c.started(p, ln.Addr(), "listening on "+ln.Addr().String()+"/"+string(p.Transport)+tlsSuffix(p)) {
		return ErrServerClosed
	}
	return c.acceptLoop(ln, p)
}

// listenTCP listens on the rules' address with their connectionQueue, or with the system's
// maximum backlog (Go's) when the rules leave it unset.
func (c *Connector) listenTCP(p *rules.Program) (net.Listener, error) {
	network, address := c.address(p)
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	if p.ConnectionQueue == 0 {
		return ln, nil
	}
	if err := setBacklog(ln, p.ConnectionQueue); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("set connectionQueue on %s: %w", address, err)
	}
	return ln, nil
}

// setBacklog applies connectionQueue: Go listens with the system's maximum backlog, and
// calling listen(2) again on a listening socket changes it.
func setBacklog(ln net.Listener, backlog int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := raw.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	return lerr
}

func tlsSuffix(p *rules.Program) string {
	switch {
	case !p.TLS.Enabled:
		return ""
	case p.Transport == v1alpha1.TransportUDP:
		return " (DTLS)"
	default:
		return " (TLS)"
	}
}

// acceptLoop serves the connections of a TCP or DTLS listener, each on its own goroutine,
// until the connector stops or the listener fails.
func (c *Connector) acceptLoop(ln net.Listener, p *rules.Program) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if c.isStopping() {
				return ErrServerClosed
			}
			if !temporary(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			delay = c.retryAfter(p, delay, "accept on "+ln.Addr().String(), err)
			continue
		}
		delay = 0
		peer := unmap(addrPortOf(conn.RemoteAddr()))
		if refusal, reason, stopped := c.admit(conn, peer, p); stopped {
			continue
		} else if refusal != "" {
			_ = conn.Close()
			if p.Transport == v1alpha1.TransportUDP {
				// A DTLS hello: its source is unproven before the cookie, so summarised.
				c.refuse(reason, peer, p.Transport, p.PeerPrefixV6)
			} else {
				c.reject(peer, p.Transport, refusal)
			}
			continue
		}
		if !c.tasks.goFunc(func() { c.serveStream(conn, p) }) {
			_ = conn.Close()
			c.untrackSocket(conn)
		}
	}
}

// unprovenSource says a DTLS handshake was given up before its source returned the cookie,
// and why.
func unprovenSource(err error) (refusalReason, bool) {
	switch {
	case errors.Is(err, errUnverified):
		return refusedUnverified, true
	case errors.Is(err, errEvicted):
		return refusedEvicted, true
	}
	return 0, false
}

// temporary says whether an accept or read error may go away by itself (net.Error's
// Temporary, as net/http's Server asks it).
func temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// retryAfter records a temporary error of what and pauses before the retry: twice as long
// as the last time (delay), from firstRetry to maxRetry. It returns the pause.
func (c *Connector) retryAfter(p *rules.Program, delay time.Duration, what string, err error) time.Duration {
	delay = min(max(2*delay, firstRetry), maxRetry)
	c.record(&v1alpha1.ActivityRecord{
		Time: nowMicro(), Type: v1alpha1.ActivityError, RulesRef: &p.Ref,
		Message: fmt.Sprintf("%s: %v; retrying in %v", what, err, delay),
	})
	c.retryWait(delay, c.quit)
	return delay
}

// serveStream runs one accepted connection: its handshake when p asks for TLS or DTLS,
// then its conversation. A failed handshake is recorded as an Error with its reason.
func (c *Connector) serveStream(conn net.Conn, p *rules.Program) {
	raw := conn
	detail := ""
	if p.TLS.Enabled {
		sc, d, err := c.secureServer(p, conn)
		c.handshaken(raw)
		if reason, unproven := unprovenSource(err); unproven {
			// Most likely a spoofed source: counted and summarised, not an Error each.
			_ = conn.Close()
			c.untrackSocket(raw)
			c.refuse(reason, unmap(addrPortOf(conn.RemoteAddr())), p.Transport, p.PeerPrefixV6)
			return
		}
		if err != nil {
			peer := addrPortOf(conn.RemoteAddr())
			c.record(&v1alpha1.ActivityRecord{
				Time: nowMicro(), Type: v1alpha1.ActivityError, RulesRef: &p.Ref, Message: err.Error(),
				Connection: &v1alpha1.ConnectionRef{Peer: unmap(peer).String(), Transport: p.Transport},
			})
			_ = conn.Close()
			c.untrackSocket(raw)
			return
		}
		conn, detail = sc, d
	}
	s := c.newStreamSocket(conn, raw, p.Transport)
	if p.Session != nil {
		c.serveSessionStream(p, s, detail)
		c.untrackSocket(raw)
		return
	}
	c.holdSocket(raw) // before its conversation starts: Shutdown ends it, with its socket
	cv := c.join(keyOf(p, s.peer), s.peer, s, p.Transport == v1alpha1.TransportUDP, detail, "")
	if cv == nil {
		_ = conn.Close()
		c.untrackSocket(raw)
		return
	}
	// A plain TCP connection that stays silent waits for its first input without a
	// goroutine (idle.park, idlewait_linux.go): this goroutine reads it for
	// Options.FirstInputWait first, and reads on if it speaks. Any other connection (TLS,
	// framed, CEL) is read by this goroutine, which greeted it: handing the reader to
	// another task of the group would cost a wake-up per connection and spare nothing, as
	// that task's worker may have a grown stack too, which an idle connection keeps
	// (group.go, docs/performance.md §1).
	if c.idle.parkable(cv, s) {
		if wait := c.opts.FirstInputWait; wait > 0 {
			c.readLoop(cv, s, wait)
			return
		}
		if c.idle.park(cv, s) {
			return
		}
	}
	c.readLoop(cv, s, 0)
}
