package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/metrics"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/examples"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
	sinkpkg "github.com/parley-dev/parley/sink"
)

type runOptions struct {
	files        []string
	output       string
	logFile      string
	watch        bool
	metricsAddr  string
	ip           string
	port         int
	name         string
	udpPeerRate  float64
	udpPeerBurst int
	buffer       int
	budget       int64
	tls          tlsFlags
	signKey      string
	jsonLines    string
	shared       sharedFlags
}

// sharedFlags choose the store of shared variables (memory.shared).
type sharedFlags struct {
	url, ca string
	timeout time.Duration
}

// store is the one store every document of the run shares: Redis or Valkey at --shared-memory,
// else in-process.
func (f sharedFlags) store(ctx context.Context) (sharedmemory.Store, error) {
	if f.url == "" {
		if f.ca != "" {
			return nil, errors.New("--shared-memory-ca needs --shared-memory with a rediss:// URL")
		}
		return sharedmemory.NewMemory(), nil
	}
	o := sharedmemory.RedisOptions{}
	if f.ca != "" {
		// Read again at each new connection to the store, as a connector pod reads its
		// mounted CA: a CA file replaced after the store's CA is rotated takes effect
		// without a restart. Read once now too, so that a bad file stops the run at start.
		o.RootCAsFrom = sharedmemory.CAFile(f.ca)
		if _, err := o.RootCAsFrom(); err != nil {
			return nil, fmt.Errorf("--shared-memory-ca: %w", err)
		}
	}
	s, err := sharedmemory.NewRedis(ctx, f.url, o)
	if err != nil {
		return nil, fmt.Errorf("--shared-memory: %w", err)
	}
	return s, nil
}

// tlsFlags carry the key material for rules with operation.tls.enabled.
type tlsFlags struct {
	cert, key, clientCA, ca, serverName string
	insecureSkipVerify                  bool
}

func (f tlsFlags) load() (*connector.TLS, error) {
	t, err := connector.LoadTLS(f.cert, f.key, f.clientCA, f.ca)
	if err != nil {
		return nil, err
	}
	t.ServerName, t.InsecureSkipVerify = f.serverName, f.insecureSkipVerify
	return t, nil
}

func newRunCommand() *cobra.Command {
	o := runOptions{}
	cmd := &cobra.Command{
		Use:   "run [[-f] FILE|DIR|-]...",
		Short: "Serve ConversationRules standalone, without a cluster, printing activities live",
		Long: "Serve (or, in client mode, dial) the conversations of one or more ConversationRules " +
			"and print every activity. Files come as arguments or with -f, as kubectl apply takes them: a file, " +
			"a directory (its .yaml, .yml and .json files), or - for standard input. Without any, serves the " +
			"embedded example " + examples.Default + ".\n" +
			"Ctrl-C ends live conversations gracefully: the ending rule is sent before sockets close.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "table" && o.output != "json" && o.output != "none" {
				return fmt.Errorf("--output %q: want table, json or none", o.output)
			}
			if o.jsonLines != "compact" && o.jsonLines != "full" {
				return fmt.Errorf("--json-lines %q: want compact or full", o.jsonLines)
			}
			if o.port < 0 || o.port > 65535 {
				return fmt.Errorf("--port %d: want 0 (any free port) to 65535", o.port)
			}
			o.files = append(o.files, args...)
			if why := reloadable(o.files); o.watch && why != "" {
				return fmt.Errorf("--watch: %s", why)
			}
			return run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o, cmd.Flags().Changed("port"), cmd.Flags().Changed("ip"))
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "ConversationRules YAML or JSON: a file, a directory, or - for standard input (repeatable; each document is served)")
	f.StringVarP(&o.output, "output", "o", "table", "activity format: table (for people), json (one Activity per line) or none (counted only)")
	f.StringVar(&o.logFile, "log-file", "", "also append every activity to this file as JSON lines, whatever --output shows")
	f.StringVar(&o.jsonLines, "json-lines", "compact", "JSON lines (-o json, --log-file): compact (a line leaves out what the lines before it said: its evidence hashes, the rulesRef, a known connection's peer, a base64 that is the text; parley verify and parley transcript restore them) or full (each line the whole Activity record)")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", "0", "serve the connector pods' Prometheus metrics at http://ADDRESS/metrics (0: none), summed over every rules document")
	f.BoolVar(&o.watch, "watch", false, "reload the rules files when they change, as SIGHUP does: new conversations use the new rules")
	f.StringVar(&o.ip, "ip", "", "override operation.ip (bind address, or client target)")
	f.IntVar(&o.port, "port", 0, "override operation.port (0 = any free port, server mode); only with a single rules document")
	f.StringVar(&o.name, "name", "", "connector name reported in activities (default: the rules' name)")
	f.Float64Var(&o.udpPeerRate, "udp-peer-rate", 100, "UDP server: datagrams per second accepted from one peer IP (0 = unlimited)")
	f.IntVar(&o.udpPeerBurst, "udp-peer-burst", 200, "UDP server: burst of datagrams accepted from one peer IP")
	f.IntVar(&o.buffer, "activity-buffer", activity.DefaultCapacity, "activities waiting to be printed before new ones are dropped (and counted)")
	f.Int64Var(&o.budget, "activity-budget", activity.DefaultBudget, "bytes of activities waiting to be printed before new ones are dropped (and counted)")
	f.StringVar(&o.signKey, "sign-key", "", "PEM Ed25519 private key (PKCS #8): sign checkpoints of the activities' evidence chain into the JSON outputs (-o json, --log-file) and the ActivitySinks of the files, for parley verify")
	f.StringVar(&o.tls.cert, "tls-cert", "", "PEM certificate (chain): the server's, or the one a client presents")
	f.StringVar(&o.tls.key, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.tls.clientCA, "tls-client-ca", "", "server: PEM CA bundle that client certificates must chain to (operation.tls.clientAuthentication)")
	f.StringVar(&o.tls.ca, "tls-ca", "", "client: PEM CA bundle the server's certificate must chain to (default: the system's)")
	f.StringVar(&o.tls.serverName, "tls-server-name", "", "client: name the server's certificate must carry (default: operation.ip)")
	f.BoolVar(&o.tls.insecureSkipVerify, "tls-insecure-skip-verify", false, "client: accept any server certificate")
	f.StringVar(&o.shared.url, "shared-memory", "", "keep shared variables (memory.shared) in Redis or Valkey: redis://[user:password@]host:port/db, rediss:// for TLS (default: in this process, shared by every rules document)")
	f.StringVar(&o.shared.ca, "shared-memory-ca", "", "PEM CA bundle the rediss:// server's certificate must chain to, read again at each new connection (default: the system's)")
	f.DurationVar(&o.shared.timeout, "shared-memory-timeout", connector.DefaultSharedStepTimeout, "bound on each atomic step on shared memory; a slower store makes it an Error activity")
	return cmd
}

type loaded struct {
	name   string
	labels map[string]string
	prog   *rules.Program
}

// sinkFiles are the ActivitySinks of the files and the Secrets they may name.
type sinkFiles struct {
	sinks   []rulesfile.SinkDocument
	secrets []rulesfile.SecretDocument
}

// fingerprint digests the sinks and Secrets as read, for a reload to tell whether they
// changed: the running sinks are built once, at start.
func (sf sinkFiles) fingerprint() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, d := range sf.sinks {
		_ = enc.Encode(&d.Sink)
	}
	for _, d := range sf.secrets {
		_ = enc.Encode(&d.Secret)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// loadAll reads and compiles every document, reporting every error of every document, and
// keeps the ActivitySinks and Secrets of the files.
func loadAll(stdin io.Reader, stderr io.Writer, files []string) ([]loaded, sinkFiles, error) {
	var docs []rulesfile.Document
	if len(files) == 0 {
		d, err := examples.DefaultRules()
		if err != nil {
			return nil, sinkFiles{}, err
		}
		fmt.Fprintf(stderr, "parley: no rules file given, serving the embedded example %s\n", examples.Default)
		docs = append(docs, d)
	}
	read, err := rulesfile.ReadAll(files, stdin)
	ds, skipped := read.Rules, read.Skipped
	sf := sinkFiles{sinks: read.Sinks, secrets: read.Secrets}
	if err != nil {
		var mistake *rulesfile.Error
		if !errors.As(err, &mistake) {
			return nil, sf, err // no file could be read, or a path is missing
		}
		// Every reading mistake, then the compile errors of the documents read without one.
		fmt.Fprintln(stderr, err)
	}
	for _, s := range skipped {
		fmt.Fprintf(stderr, "parley: %s (skipped)\n", s)
	}
	docs = append(docs, ds...)
	invalid, disabled := rulesfile.InvalidDocuments(err), 0
	if len(docs) == 0 && invalid == 0 {
		return nil, sf, fmt.Errorf("no %s in %v", rulesfile.Kind, files)
	}
	var out []loaded
	for _, d := range docs {
		if e := d.Rules.Spec.Enabled; e != nil && !*e {
			fmt.Fprintf(stderr, "parley: %s: %s is disabled (spec.enabled: false), not served\n", d.Source, d.Name())
			disabled++
			continue
		}
		prog, errs, warnings := compileDocument(&d)
		for _, line := range append(errs, warnings...) {
			fmt.Fprintln(stderr, line)
		}
		if len(errs) > 0 {
			invalid++
			continue
		}
		out = append(out, loaded{name: d.Name(), labels: d.Rules.Labels, prog: prog})
	}
	if invalid > 0 {
		return nil, sf, fmt.Errorf("%d invalid rules document(s); `parley check` lists the same errors", invalid)
	}
	if len(out) == 0 {
		return nil, sf, fmt.Errorf("all %d rules document(s) are disabled", disabled)
	}
	return out, sf, nil
}

func run(parent context.Context, stdin io.Reader, stdout, stderr io.Writer, o runOptions, portSet, ipSet bool) error {
	progs, sf, err := loadAll(stdin, stderr, o.files)
	if err != nil {
		return err
	}
	tlsMaterial, err := o.tls.load()
	if err != nil {
		return err
	}
	if (portSet || o.name != "") && len(progs) > 1 {
		return errors.New("--port and --name need a single rules document")
	}
	binary := map[string]bool{}
	for _, l := range progs {
		binary[l.name] = l.prog.Encoding == v1alpha1.EncodingBinary
	}
	if o.name != "" {
		binary[o.name] = progs[0].prog.Encoding == v1alpha1.EncodingBinary
	}
	signTo, closeSigning, err := checkpointSigning(o, len(sf.sinks) > 0, stderr)
	if err != nil {
		return err
	}
	defer closeSigning(context.Background()) // on an early return; the normal end signs after the last activities
	var sink activity.Sink = activity.NewTableSink(stdout, activity.TableOptions{
		ConnectorColumn: len(progs) > 1, Binary: binary, Color: colorTerminal(stdout),
	})
	switch o.output {
	case "json":
		sink = signTo(jsonSink(o, stdout), evidence.CheckpointLines(stdout))
	case "none":
		sink = activity.DiscardSink{}
	}
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--log-file: %w", err)
		}
		defer f.Close()
		sink = activity.MultiSink{sink, signTo(jsonSink(o, f), evidence.CheckpointLines(f))}
	}
	// The ActivitySinks of the files get the activities as the cluster's would, keyed by
	// connector, evidence chain and sequence number.
	var feed *sinkpkg.Feed
	if len(sf.sinks) > 0 {
		connectorLabels := map[string]map[string]string{}
		for _, l := range progs {
			name := l.name
			if o.name != "" {
				name = o.name
			}
			connectorLabels[name] = l.labels
		}
		if feed, err = startSinks(sf.sinks, sf.secrets, connectorLabels, sinkpkg.Options{}); err != nil {
			return err
		}
		defer func() { // on an early return; the normal end delivers what they hold first
			for _, r := range feed.Routes {
				_ = r.Sink.Close()
			}
		}()
		// With --sign-key, the checkpoints go after the activities they cover to the sinks
		// that take them, so that their outputs verify too.
		sink = activity.MultiSink{sink, signTo(feed, feed.WriteCheckpoints)}
	}
	tally := &tallySink{Sink: sink, per: map[string]*tally{}}
	var reg *activity.Register
	started := make([]*served, 0, len(progs))
	m, err := metrics.New(func() metrics.Counters { return runCounters(reg, started) })
	if err != nil {
		return err
	}
	reg = activity.NewRegister(m.Sink(tally), o.buffer, func(err error) { fmt.Fprintln(stderr, "parley: activities:", err) })
	reg.SetBudget(o.budget)
	go reg.Run()

	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		select {
		case <-signals:
		case <-ctx.Done():
			return
		}
		fmt.Fprintln(stderr, "parley: ending conversations (Ctrl-C again to quit at once)")
		cancel()
		if _, ok := <-signals; ok {
			os.Exit(130)
		}
	}()

	store, err := o.shared.store(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	for _, l := range progs {
		opts := connector.Options{
			Name: l.name, Register: reg, UDPPeerRate: o.udpPeerRate, UDPPeerBurst: o.udpPeerBurst, TLS: tlsMaterial,
			SharedMemory: store, SharedStepTimeout: o.shared.timeout,
		}
		if o.udpPeerRate <= 0 {
			opts.UDPPeerRate = -1 // the flag's 0 means no limit
		}
		if o.name != "" {
			opts.Name = o.name
		}
		if portSet {
			opts.Port = &o.port
		}
		if ipSet {
			opts.IP = &o.ip
		}
		c, err := connector.New(l.prog, opts)
		if err != nil {
			return err
		}
		started = append(started, &served{name: opts.Name, c: c, prog: l.prog})
	}
	// The metrics read started from here on: it no longer changes.
	metricsAddr, stopMetrics, err := m.Serve(o.metricsAddr, nil)
	if err != nil {
		return fmt.Errorf("--metrics-bind-address: %w", err)
	}
	defer stopMetrics()
	if metricsAddr != nil {
		fmt.Fprintf(stderr, "parley: metrics at http://%s/metrics\n", metricsAddr)
	}
	errs := make([]error, len(started))
	var wg sync.WaitGroup
	for i, s := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.c.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w%s", s.name, err, listenHint(err))
				cancel()
			}
		}()
	}
	// Say where to reach the connectors once they listen, not before: a port already taken
	// must not be preceded by an invitation to use it. The table and JSON outputs carry the
	// ConnectorStarted activity; -o none has only this line.
	go func() {
		for _, n := range started {
			select {
			case <-n.c.Ready():
			case <-ctx.Done():
				return
			}
			if a := n.c.Addr(); a != nil && o.output == "none" {
				fmt.Fprintf(stderr, "parley: %s listening on %s\n", n.name, a)
			}
		}
		if len(o.files) == 0 {
			fmt.Fprintf(stderr, "parley: %s\n", examples.DefaultHint)
		}
	}()
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		if reloadable(o.files) == "" {
			watchReloads(ctx, stderr, o, portSet, ipSet, o.watch, started, sf.fingerprint())
		}
	}()
	wg.Wait()
	cancel() // client conversations may all have ended by themselves
	<-reloads
	flushCtx, flushCancel := context.WithTimeout(context.Background(), flushTime)
	defer flushCancel()
	if err := reg.Close(flushCtx); err != nil {
		fmt.Fprintln(stderr, "parley: activities not all printed:", err)
	}
	// Within what is left of the flush's time: a flush that a stalled output ran out of
	// time leaves none, and the stop does not wait signCloseTime more for the same output.
	closeSigning(flushCtx)
	if feed != nil {
		drainCtx, drainCancel := context.WithTimeout(context.Background(), sinkDrainTime)
		stopSinks(drainCtx, stderr, feed)
		drainCancel()
	}
	// The summary comes after the last rows: the register has printed everything by now.
	for _, n := range started {
		fmt.Fprintf(stderr, "parley: %s: %s\n", n.name, summary(n.c.Stats(), tally.of(n.name)))
	}
	st := reg.Stats()
	if st.Dropped > 0 || st.Failed > 0 {
		fmt.Fprintf(stderr, "parley: %d activities dropped (buffer full by count or bytes), %d failed to print\n", st.Dropped, st.Failed)
	}
	if o.output == "none" {
		fmt.Fprintf(stderr, "parley: %d activities recorded\n", st.Recorded)
	}
	return errors.Join(errs...)
}

// flushTime bounds how long `parley run` waits at the end for its outputs to take the
// activities still queued (a terminal or pipe that stopped reading holds them); what is
// left of it bounds the signing of the last checkpoints (signCloseTime, signGrace).
const flushTime = 10 * time.Second

// signCloseTime bounds how long `parley run` waits at the end to sign its last checkpoints,
// when what is left of the stop's time is longer. A variable for the tests, which stretch
// it to show which bound ended a wait.
var signCloseTime = 5 * time.Second

// signGrace is how long the outputs still taking writes get for their last checkpoint when
// the stop has no time left (an output stalled the flush): a line each, far less than this.
// Without it, a --log-file beside a stalled standard output would lose its last checkpoint
// to the stalled one. A variable for the tests.
var signGrace = time.Second

// jsonSink writes activities to w as JSON lines, compact (docs/evidence.md) unless
// --json-lines full.
func jsonSink(o runOptions, w io.Writer) activity.Sink {
	if o.jsonLines == "full" {
		return activity.NewJSONSink(w)
	}
	return activity.NewCompactJSONSink(w)
}

// checkpointSigning reads --sign-key and returns what puts a sink's checkpoints where it
// writes, through emit (the sink unchanged without a key), and what signs the last
// activities at the end (once; later calls return at once). The last checkpoints go into
// the outputs the register writes to: one that takes nothing more (a stalled pipe) holds
// its signer as it holds the register, so the outputs are signed side by side, until ctx
// ends (but for signGrace at least) or for signCloseTime, whichever comes first.
func checkpointSigning(o runOptions, haveSinks bool, stderr io.Writer) (signTo func(activity.Sink, func([]*evidence.Checkpoint) error) activity.Sink, closeAll func(ctx context.Context), err error) {
	if o.signKey == "" {
		return func(s activity.Sink, _ func([]*evidence.Checkpoint) error) activity.Sink { return s }, func(context.Context) {}, nil
	}
	if o.output != "json" && o.logFile == "" && !haveSinks {
		return nil, nil, errors.New("--sign-key signs JSON activities: add -o json, --log-file or an ActivitySink")
	}
	key, err := evidence.ReadPrivateKey(o.signKey)
	if err != nil {
		return nil, nil, fmt.Errorf("--sign-key: %w", err)
	}
	onError := func(err error) { fmt.Fprintln(stderr, "parley: evidence:", err) }
	var sinks []*evidence.SigningSink
	signTo = func(s activity.Sink, emit func([]*evidence.Checkpoint) error) activity.Sink {
		ss := evidence.NewSigningSinkFunc(s, emit, evidence.NewSigner(key, 0, 0))
		sinks = append(sinks, ss)
		go ss.Run(onError)
		return ss
	}
	var once sync.Once
	closeAll = func(ctx context.Context) {
		once.Do(func() {
			bound := signCloseTime
			if deadline, ok := ctx.Deadline(); ok {
				bound = min(bound, max(time.Until(deadline), signGrace))
			}
			timeout := time.NewTimer(bound)
			defer timeout.Stop()
			var wg sync.WaitGroup
			for _, ss := range sinks {
				wg.Go(func() {
					if err := ss.Close(true); err != nil {
						onError(err)
					}
				})
			}
			signed := make(chan struct{})
			go func() {
				wg.Wait()
				close(signed)
			}()
			select {
			case <-signed:
			case <-timeout.C:
				fmt.Fprintln(stderr, "parley: the last evidence checkpoints not all signed: an output takes nothing more")
			}
		})
	}
	return signTo, closeAll, nil
}

// listenHint says what to do about the errors a newcomer meets when a port cannot be bound.
func listenHint(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return " (another process holds the port: stop it, or choose another with --port; --port 0 takes any free port)"
	case errors.Is(err, syscall.EACCES):
		return " (ports below 1024 need root, the CAP_NET_BIND_SERVICE capability, or a lower " +
			"net.ipv4.ip_unprivileged_port_start sysctl; or choose a port above 1023 with --port, --port 0 for any free port)"
	}
	return ""
}

// tallySink counts, per connector, what the exit summary reports, on the register's
// goroutine. It is read at the end, when the register may still be writing: a stop that
// gave up waiting for it (a stalled output) must not read the counts unlocked.
type tallySink struct {
	activity.Sink
	mu  sync.Mutex
	per map[string]*tally
}

type tally struct{ alerts, captures int }

// ReadsEvidence implements activity.EvidenceReader for the sink it counts for.
func (s *tallySink) ReadsEvidence() bool { return activity.ReadsEvidence(s.Sink) }

func (s *tallySink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.mu.Lock()
	for _, a := range batch {
		t := s.per[a.Connector]
		if t == nil {
			t = &tally{}
			s.per[a.Connector] = t
		}
		if a.Alert {
			t.alerts++
		}
		t.captures += len(a.Captures)
	}
	s.mu.Unlock()
	return s.Sink.Write(batch)
}

// of returns the counts of a connector so far (nil: none).
func (s *tallySink) of(connector string) *tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.per[connector]; t != nil {
		c := *t
		return &c
	}
	return nil
}

// summary is a connector's line at exit: "3 conversations (2 alerts, 1 capture), 0 peers
// rejected, 0 datagrams rate-limited", then ", 2 conversations evicted" when
// capacityPolicy EvictIdlest ended some for new sources.
func summary(st connector.Stats, t *tally) string {
	if t == nil {
		t = &tally{}
	}
	line := fmt.Sprintf("%s (%s, %s), %s rejected, %s rate-limited",
		plural(int(st.Total), "conversation"), plural(t.alerts, "alert"), plural(t.captures, "capture"),
		plural(int(st.Rejected), "peer"), plural(int(st.RateLimited), "datagram"))
	if st.Evicted > 0 {
		line += ", " + plural(int(st.Evicted), "conversation") + " evicted"
	}
	if st.UDPSocketDropped > 0 {
		line += ", " + plural(int(st.UDPSocketDropped), "datagram") + " dropped by the kernel (receive buffer full)"
	}
	return line
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// colorTerminal says whether w is a terminal that takes colour: a character device, and
// NO_COLOR (no-color.org) unset.
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// runCounters sums the counters of every connector `parley run` serves. The metrics
// endpoint may read them while the connectors start: the slice only grows before serving.
func runCounters(reg *activity.Register, running []*served) metrics.Counters {
	var c metrics.Counters
	for _, s := range running {
		st := s.c.Stats()
		c.ActiveConnections += int64(st.Active)
		c.TotalConnections += st.Total
		c.RejectedConnections += st.Rejected
		c.EvictedConnections += st.Evicted
		c.RateLimitedDatagrams += st.RateLimited
		c.UDPSocketDropped += st.UDPSocketDropped
		c.UnverifiedHellos += st.DTLSUnverified
		c.DTLSDropped.Evicted += st.DTLSEvicted
		c.DTLSDropped.Backlog += st.DTLSBacklogDropped
		c.DTLSDropped.Buffer += st.DTLSBufferDropped
		c.DTLSDropped.Socket += st.DTLSSocketDropped
	}
	rs := reg.Stats()
	c.ActivitiesProduced, c.ActivitiesDropped = rs.Recorded+rs.Dropped, rs.Dropped
	return c
}
