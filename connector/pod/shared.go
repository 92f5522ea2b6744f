package pod

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/sharedmemory"
)

// DefaultSharedMemoryCheck is how often the pod checks its shared-memory store.
const DefaultSharedMemoryCheck = 5 * time.Second

// checkTimeout bounds one check: a store slower than that is as good as lost.
const checkTimeout = 2 * time.Second

// openSharedMemory builds the Redis or Valkey store the operator wrote into the connector's
// engine Secret, mounted at dir (v1alpha1.SharedMemoryURLKey and its password and CA; the
// password and the CA read again at each new connection, the URL once),
// with the ExternalConnector's namespace as the key namespace, so that connectors of two
// namespaces never see each other's variables. It returns nil, and no error, when the
// Secret names no store: the connectors of this pod then keep shared variables in
// process. A store that is down does not stop the pod: its health says so.
func openSharedMemory(dir, namespace string) (*sharedmemory.Redis, error) {
	if dir == "" {
		return nil, nil
	}
	read := func(key string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, key))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	url, err := read(v1alpha1.SharedMemoryURLKey)
	if err != nil || len(strings.TrimSpace(string(url))) == 0 {
		return nil, err
	}
	o := sharedmemory.RedisOptions{Namespace: namespace}
	// The password is read again at each new connection to the store: the kubelet updates
	// the mounted file when the operator rotates it, and reconnections must use the new
	// one. Read once now too, so that an unreadable file stops the pod at start.
	password := func() (string, error) {
		pw, err := read(v1alpha1.SharedMemoryPasswordKey)
		return strings.TrimRight(string(pw), "\r\n"), err
	}
	if _, err := password(); err != nil {
		return nil, err
	}
	o.PasswordFrom = password
	ca, err := read(v1alpha1.SharedMemoryCAKey)
	if err != nil {
		return nil, err
	}
	if len(ca) > 0 {
		// The CA too is read again at each new connection, so that a rotated one (the
		// store's certificate renewed by a new CA) reaches the pod as the password does.
		// Once the pod started with a CA, a CA file that is gone or holds no PEM certificate
		// fails the connections (said by the store's health), rather than trusting the
		// system's roots or the CA read before. Read once now too, so that a bad file stops
		// the pod at start.
		roots := sharedmemory.CAFile(filepath.Join(dir, v1alpha1.SharedMemoryCAKey))
		if _, err := roots(); err != nil {
			return nil, err
		}
		o.RootCAsFrom = roots
	}
	return sharedmemory.OpenRedis(strings.TrimSpace(string(url)), o)
}

// storeHealth checks the store every interval, as steps may be rare, and keeps what the
// heartbeat says of it.
type storeHealth struct {
	store    *sharedmemory.Redis
	interval time.Duration
	log      logr.Logger

	mu      sync.Mutex
	checked bool
	lost    bool
	lastErr string
	errors  uint64
}

// run checks at once, then every interval, until ctx is done.
func (h *storeHealth) run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *storeHealth) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	err := h.store.Ping(cctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: not the store's fault
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	wasLost, first := h.lost, !h.checked
	h.checked = true
	if err != nil {
		h.errors++
		h.lost, h.lastErr = true, err.Error()
		if !wasLost {
			h.log.Error(err, "shared memory lost", "store", h.store.String())
		}
		return
	}
	h.lost = false
	if wasLost || first {
		h.log.Info("shared memory ready", "store", h.store.String())
	}
}

// report is the store's part of a heartbeat; stepErrors are the shared steps the running
// connector could not make.
func (h *storeHealth) report(stepErrors uint64) *enginev1.SharedMemory {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &enginev1.SharedMemory{Store: h.store.String(), LastError: h.lastErr, Errors: h.errors + stepErrors}
	switch {
	case !h.checked:
	case h.lost:
		out.State = enginev1.SharedMemory_LOST
	default:
		out.State = enginev1.SharedMemory_READY
	}
	return out
}
