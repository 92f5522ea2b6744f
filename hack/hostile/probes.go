package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/parley-dev/parley/connector/connectortest"
)

// kind is how a real client talks to a probe's server.
type kind int

const (
	tcpKind kind = iota
	tlsKind
	udpKind
	dtlsKind
)

// probe is one kind of hostile traffic, with the rules of the server it is sent to.
type probe struct {
	name, what string
	kind       kind
	operation  string // the rules' operation, YAML flow mapping without braces
	// send sends the traffic to addr until ctx is done or its count is reached, and says
	// what it sent.
	send func(ctx context.Context, c config, addr string) (string, error)
}

var probes = []*probe{
	{
		name: "flood", what: "connect and close at once, as fast as 32 sources can", kind: tcpKind,
		operation: "transport: TCP, identifyBy: Address, maxConcurrentConnections: 1000, maxConnectionsPerPeer: 8, connectionQueue: 4096",
		send:      flood,
	},
	{
		name: "slowloris", what: "1,500 sockets from as many sources, one byte each every 3 s", kind: tcpKind,
		operation: "transport: TCP, identifyBy: Address, maxConcurrentConnections: 2000, maxConnectionsPerPeer: 8, interactionTimeout: 30s, maxConversationAge: 10m, connectionQueue: 4096",
		send:      slowloris,
	},
	{
		name: "stream", what: "one peer streams 1 GiB at maxInputSize 1 MiB", kind: tcpKind,
		operation: "transport: TCP, identifyBy: Address, maxConcurrentConnections: 5, maxInputSize: 1048576",
		send:      stream,
	},
	{
		name: "garbage", what: "random bytes and bad encodings, 16 sources reconnecting", kind: tcpKind,
		operation: "transport: TCP, identifyBy: Address, maxConcurrentConnections: 1000, maxConnectionsPerPeer: 8, maxInputSize: 65536",
		send:      garbage,
	},
	{
		name: "udp-spoof", what: "datagrams from 20,000 sources (127.9.x.y), 10 each", kind: udpKind,
		// EvictIdlest: the real client's new conversations take the slots of the idlest
		// spoofed ones rather than being refused until those time out (docs/hardening.md §5).
		operation: "transport: UDP, identifyBy: Address, maxConcurrentConnections: 1000, interactionTimeout: 5s, capacityPolicy: EvictIdlest",
		send:      udpSpoof,
	},
	{
		name: "dtls-hellos", what: "5,000 DTLS ClientHellos from as many sources, never returning the cookie", kind: dtlsKind,
		operation: "transport: UDP, tls: {enabled: true}, identifyBy: Address, maxConcurrentConnections: 1000",
		send:      dtlsHellos,
	},
	{
		name: "tls-stall", what: "500 TLS connections that never send a ClientHello, reopened as they are cut", kind: tlsKind,
		operation: "transport: TCP, tls: {enabled: true}, identifyBy: Address, maxConcurrentConnections: 1000",
		send:      tlsStall,
	},
}

func probeNames() []string {
	names := make([]string, len(probes))
	for i, p := range probes {
		names[i] = p.name
	}
	return names
}

func probeByName(name string) *probe {
	for _, p := range probes {
		if p.name == name {
			return p
		}
	}
	return nil
}

// result is one row of the table.
type result struct {
	probe               string
	sent                string
	before, peak        int64
	latencies           []time.Duration // of the real client's requests that succeeded, sorted
	clientOK, clientBad int
	clientErr           string
	counted             string
}

func (r result) row() string {
	return strings.Join(r.cells(), " | ")
}

func (r result) cells() []string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	client := fmt.Sprintf("%s / %s / %s ms (%d ok", ms(quantile(r.latencies, 0.5)), ms(quantile(r.latencies, 0.99)),
		ms(quantile(r.latencies, 1)), r.clientOK)
	if r.clientBad > 0 {
		client += fmt.Sprintf(", %d failed: %s", r.clientBad, r.clientErr)
	}
	client += ")"
	return []string{r.probe, r.sent, mib(r.peak), mib(r.peak - r.before), client, r.counted}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "probe\t sent\t peak RSS\t growth\t real client p50 / p99 / max (of those ok)\t server counted")
	for _, r := range results {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t "))
	}
	_ = tw.Flush()
}

// runProbe starts a server for p, sends its traffic while a real client measures, and stops
// the server.
func runProbe(c config, keys keyFiles, p *probe) (result, error) {
	rules := filepath.Join(c.dir, p.name+".yaml")
	doc := fmt.Sprintf(`apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: hostile-%s}
spec:
  operation: {mode: Server, ip: 127.0.0.1, port: 1, %s}
  conversation:
    greetings: {value: "+OK ready\r\n"}
    rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\r\n"}]
`, p.name, p.operation)
	if err := os.WriteFile(rules, []byte(doc), 0o600); err != nil {
		return result{}, err
	}
	var extra []string
	if p.kind == tlsKind || p.kind == dtlsKind {
		extra = append(extra, "--tls-cert", keys.cert, "--tls-key", keys.key)
	}
	srv, addr, err := startServer(c, rules, extra...)
	if err != nil {
		return result{}, err
	}
	if c.verbose {
		fmt.Fprintln(os.Stderr, "  server:", srv.command)
	}
	defer func() { _ = srv.stop() }()
	pid := srv.cmd.Process.Pid
	// The server serves before the probe: its memory then is the baseline.
	for range 5 {
		if _, err := realRequest(p.kind, addr); err != nil {
			return result{}, fmt.Errorf("real client before the probe: %w", err)
		}
	}
	before, _, err := rss(pid)
	if err != nil {
		return result{}, err
	}
	r := result{probe: p.name, before: before}

	client, err := startRealClient(p.kind, addr)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sent, err := p.send(ctx, c, addr)
	time.Sleep(time.Second) // what the traffic left the server doing, measured too
	cancel()
	if cerr := client.finish(&r); err == nil {
		err = cerr
	}
	if err != nil {
		return result{}, err
	}
	_, r.peak, err = rss(pid)
	if err != nil {
		return result{}, err
	}
	if err := srv.stop(); err != nil {
		return result{}, err
	}
	r.sent = sent
	r.counted = srv.counts.describe()
	if t := srv.exitTotals(); t != "" {
		r.counted += "; exit summary: " + t
	}
	if s := srv.exitSummary(); s != "" && c.verbose {
		fmt.Fprintln(os.Stderr, "  server said:", s)
	}
	return r, nil
}

// realRequest is one real client's whole exchange, from 127.0.0.1: connect (and handshake),
// the greeting, PING and its PONG; it returns how long it took.
func realRequest(k kind, addr string) (time.Duration, error) {
	const timeout = 5 * time.Second
	t0 := time.Now()
	var conn net.Conn
	var err error
	switch k {
	case tcpKind:
		conn, err = net.DialTimeout("tcp4", addr, timeout)
	case tlsKind:
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{InsecureSkipVerify: true}} // the probe's own self-signed key
		conn, err = d.Dial("tcp4", addr)
	case udpKind:
		conn, err = net.Dial("udp4", addr)
	case dtlsKind:
		conn, err = dialDTLS(addr, timeout)
	}
	if err != nil {
		return time.Since(t0), err
	}
	defer conn.Close()
	_ = conn.SetDeadline(t0.Add(timeout))
	if k == udpKind || k == dtlsKind {
		// Over UDP (DTLS too) the server greets before its first reply, one datagram (or
		// record) each: the greeting, then the PONG.
		if _, err := conn.Write([]byte(ping)); err != nil {
			return time.Since(t0), err
		}
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return time.Since(t0), err
			}
			if string(buf[:n]) == pong {
				return time.Since(t0), nil
			}
		}
	}
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || line != greeting {
		return time.Since(t0), fmt.Errorf("greeting: %q, %v", line, err)
	}
	if _, err := conn.Write([]byte(ping)); err != nil {
		return time.Since(t0), err
	}
	if line, err := br.ReadString('\n'); err != nil || line != pong {
		return time.Since(t0), fmt.Errorf("reply: %q, %v", line, err)
	}
	return time.Since(t0), nil
}

func dialDTLS(addr string, timeout time.Duration) (net.Conn, error) {
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	dc, err := dtls.ClientWithOptions(pc, raddr,
		dtls.WithInsecureSkipVerify(true), // the probe's own self-signed key
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		_ = dc.Close()
		return nil, fmt.Errorf("DTLS handshake: %w", err)
	}
	return &closeBoth{Conn: dc, pc: pc}, nil
}

// closeBoth is a DTLS client connection with the socket under it, closed with it.
type closeBoth struct {
	net.Conn
	pc net.PacketConn
}

func (c *closeBoth) Close() error {
	err := c.Conn.Close()
	_ = c.pc.Close()
	return err
}

// source is the i-th address of a probe's spoofed range 127.b.x.y.
func source(b byte, i int) net.IP { return net.IPv4(127, b, byte(i>>8), byte(i)) }

func flood(ctx context.Context, c config, addr string) (string, error) {
	const workers, most = 32, 500000
	var n, failed atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: source(5, w+1)}, Timeout: time.Second}
			for ctx.Err() == nil && n.Add(1) <= most {
				conn, err := d.DialContext(ctx, "tcp4", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = conn.Close()
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%d connects (%d failed)", min(n.Load(), most), failed.Load()), nil
}

func slowloris(ctx context.Context, c config, addr string) (string, error) {
	const sockets = 1500
	var conns []net.Conn
	defer func() {
		for _, conn := range conns {
			_ = conn.Close()
		}
	}()
	failed := 0
	for i := range sockets {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: source(6, i+1)}, Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp4", addr)
		if err != nil {
			failed++
			continue
		}
		conns = append(conns, conn)
		go func() { _, _ = io.Copy(io.Discard, conn) }() // the greeting and whatever ends it
	}
	end := time.After(c.duration)
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	trickled := 0
	for {
		for _, conn := range conns {
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write([]byte("P")); err == nil {
				trickled++
			}
		}
		select {
		case <-ctx.Done():
		case <-end:
		case <-tick.C:
			continue
		}
		return fmt.Sprintf("%d sockets (%d failed), %d bytes trickled", len(conns), failed, trickled), nil
	}
}

func stream(ctx context.Context, c config, addr string) (string, error) {
	const total = 1 << 30
	conn, err := net.Dial("tcp4", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	go func() { _, _ = io.Copy(io.Discard, conn) }()
	chunk := make([]byte, 1<<20)
	if _, err := rand.Read(chunk); err != nil {
		return "", err
	}
	t0 := time.Now()
	sent := 0
	for sent < total && ctx.Err() == nil {
		chunk[0]++ // not one input repeated
		n, err := conn.Write(chunk)
		sent += n
		if err != nil {
			return fmt.Sprintf("%d MiB then %v", sent>>20, err), nil
		}
	}
	return fmt.Sprintf("%d MiB in %.1f s", sent>>20, time.Since(t0).Seconds()), nil
}

func garbage(ctx context.Context, c config, addr string) (string, error) {
	const workers = 16
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var conns, bytesSent atomic.Int64
	// Bad encodings among the random bytes: invalid UTF-8, NULs, a long line without end,
	// truncated multi-byte sequences, a TLS ClientHello on a plain port.
	bad := [][]byte{
		{0xff, 0xfe, 0xfd, 0xc0, 0x80}, {0, 0, 0, 0, '\n'}, []byte(strings.Repeat("A", 60000)),
		{0xe2, 0x82}, {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: source(8, w+1)}, Timeout: time.Second}
			buf := make([]byte, 4096)
			for i := 0; ctx.Err() == nil; i++ {
				conn, err := d.DialContext(ctx, "tcp4", addr)
				if err != nil {
					continue
				}
				conns.Add(1)
				go func() { _, _ = io.Copy(io.Discard, conn) }()
				_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
				for j := range 8 {
					b := bad[(i+j)%len(bad)]
					if j%2 == 0 {
						_, _ = rand.Read(buf)
						b = buf[:1+int(buf[0])<<4]
					}
					n, _ := conn.Write(b)
					bytesSent.Add(int64(n))
				}
				_ = conn.Close()
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%d connections, %d MiB", conns.Load(), bytesSent.Load()>>20), nil
}

func udpSpoof(ctx context.Context, c config, addr string) (string, error) {
	const sources, each = 20000, 10
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	payload := make([]byte, 512)
	sent := 0
	for i := 0; i < sources && ctx.Err() == nil; i++ {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: source(9, i+1)})
		if err != nil {
			return "", err
		}
		for range each {
			_, _ = rand.Read(payload[:16])
			if _, err := conn.WriteToUDP(payload, raddr); err == nil {
				sent++
			}
		}
		_ = conn.Close()
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // about 20,000 datagrams/s: the flood, not the sender's buffer, is measured
		}
	}
	return fmt.Sprintf("%d datagrams", sent), nil
}

func dtlsHellos(ctx context.Context, c config, addr string) (string, error) {
	const hellos = 5000
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", err
	}
	sent := 0
	for i := 0; i < hellos && ctx.Err() == nil; i++ {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: source(10, i+1)})
		if err != nil {
			return "", err
		}
		if _, err := conn.WriteToUDP(connectortest.DTLSClientHello(), raddr); err == nil {
			sent++
		}
		_ = conn.Close()
		if i%10 == 9 {
			// About 2,000 hellos/s, twice what the cap of 1,000 handshakes takes per
			// DTLSCookieTimeout: the handshakes, not the kernel's buffer, are measured.
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The cookies' deadline passes: what the server does then is measured too.
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	return fmt.Sprintf("%d hellos", sent), nil
}

func tlsStall(ctx context.Context, c config, addr string) (string, error) {
	const sockets = 500
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var opened atomic.Int64
	var wg sync.WaitGroup
	for i := range sockets {
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: source(11, i+1)}, Timeout: time.Second}
			for ctx.Err() == nil {
				conn, err := d.DialContext(ctx, "tcp4", addr)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				opened.Add(1)
				// Hold it without a ClientHello until the server cuts it, or the probe ends.
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = io.Copy(io.Discard, conn)
				}()
				select {
				case <-done:
				case <-ctx.Done():
				}
				_ = conn.Close()
				<-done
			}
		})
	}
	wg.Wait()
	return fmt.Sprintf("%d stalled handshakes", opened.Load()), nil
}

// keyFiles are the server's certificate and key, PEM.
type keyFiles struct{ cert, key string }

// writeKeys makes a self-signed ECDSA certificate for 127.0.0.1.
func writeKeys(dir string) (keyFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyFiles{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley-hostile"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return keyFiles{}, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return keyFiles{}, err
	}
	k := keyFiles{cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key")}
	if err := os.WriteFile(k.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return keyFiles{}, err
	}
	if err := os.WriteFile(k.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return keyFiles{}, err
	}
	return k, nil
}
