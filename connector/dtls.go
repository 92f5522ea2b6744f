package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/transport/v5/udp"

	"github.com/parley-dev/parley/rules"
)

// DTLS before the cookie (docs/hardening.md). The DTLS library keeps a connection per
// source address from its first ClientHello: it answers with a HelloVerifyRequest cookie and
// waits for the ClientHello that returns it, which a spoofed source never sends. Its state
// machine cannot be fed a ClientHello whose cookie someone else checked (the handshake's
// message sequence and transcript start at the library's own HelloVerifyRequest), so
// instead of a stateless front, the connector bounds that state: a handshake counts against
// maxConcurrentConnections from its first datagram, its source must return the cookie
// within DTLSCookieTimeout (one round trip for a real client), and a handshake given up for
// that is not an Error activity but a count, summarised (refusals.go) as a spoofed flood
// would be.

// DTLSCookieTimeout is how long a DTLS source has to return the HelloVerifyRequest cookie;
// the whole handshake is still bounded by TLS.HandshakeTimeout.
const DTLSCookieTimeout = time.Second

// dtlsBacklog bounds the sources that sent a ClientHello and are not accepted yet; beyond
// it, new ones are dropped by the listener, without state.
const dtlsBacklog = 128

// errUnverified says a DTLS handshake was given up because its source never returned the
// cookie.
var errUnverified = errors.New("DTLS cookie not returned")

// listenDTLS listens for DTLS: the library demultiplexes peers into connections, so each
// conversation reads its own socket as over TCP, one datagram per read. Under it, a
// listener of ours sees what each peer's handshake sends, to tell when its cookie came back.
func (c *Connector) listenDTLS(p *rules.Program) (net.Listener, error) {
	network, address := c.address(p)
	laddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	lc := udp.ListenConfig{Backlog: dtlsBacklog, AcceptFilter: isClientHello}
	inner, err := lc.Listen(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	hl := &helloListener{Listener: inner, socks: map[string]*helloSocket{}}
	ln, err := dtls.NewListenerWithOptions(dtlsnet.PacketListenerFromListener(hl), c.opts.TLS.dtlsServerOptions(p)...)
	if err != nil {
		_ = inner.Close()
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	return &dtlsListener{Listener: ln, hellos: hl}, nil
}

// isClientHello says a datagram opens with a DTLS handshake record (content type 22) of
// epoch 0 holding a ClientHello (handshake type 1): only those create a connection.
func isClientHello(b []byte) bool {
	return len(b) > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 1
}

// isServerHello says a datagram the server sends opens with a ServerHello (handshake type
// 2), which the library sends only once the cookie came back.
func isServerHello(b []byte) bool {
	return len(b) > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 2
}

// helloListener hands the DTLS library each new source's socket, remembering it by address
// until the connector has taken it.
type helloListener struct {
	net.Listener
	mu    sync.Mutex
	socks map[string]*helloSocket
}

func (l *helloListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return conn, err
	}
	s := &helloSocket{Conn: conn}
	l.mu.Lock()
	l.socks[conn.RemoteAddr().String()] = s
	l.mu.Unlock()
	return s, nil
}

// take returns the socket accepted for addr and forgets it.
func (l *helloListener) take(addr net.Addr) *helloSocket {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := addr.String()
	s := l.socks[k]
	delete(l.socks, k)
	return s
}

// helloSocket is one source's socket under the DTLS library; verified is set once the
// server's handshake has gone past the cookie (it sends a ServerHello).
type helloSocket struct {
	net.Conn
	verified atomic.Bool
}

func (s *helloSocket) Write(b []byte) (int, error) {
	if !s.verified.Load() && isServerHello(b) {
		s.verified.Store(true)
	}
	return s.Conn.Write(b)
}

// dtlsListener is the DTLS library's listener, its connections paired with the socket
// under each.
type dtlsListener struct {
	net.Listener
	hellos *helloListener
}

func (l *dtlsListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return conn, err
	}
	dc, ok := conn.(*dtls.Conn)
	if !ok {
		return conn, nil
	}
	return &dtlsServerConn{Conn: dc, hello: l.hellos.take(conn.RemoteAddr())}, nil
}

// dtlsServerConn is an accepted DTLS connection before its handshake.
type dtlsServerConn struct {
	*dtls.Conn
	hello *helloSocket // nil if the listener lost track of it: then no cookie deadline
}

// handshake runs the server handshake within ctx, giving up at DTLSCookieTimeout if the
// source has not returned the cookie by then (errUnverified).
func (sc *dtlsServerConn) handshake(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if sc.hello != nil {
		t := time.AfterFunc(DTLSCookieTimeout, func() {
			if !sc.hello.verified.Load() {
				cancel(errUnverified)
			}
		})
		defer t.Stop()
	}
	err := sc.HandshakeContext(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errUnverified) {
		return errUnverified
	}
	return err
}
