package operator

import (
	"bytes"
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/parley-dev/parley/controllers"
)

// SharedMemorySettle is how long changes to the store's password and CA files must settle
// before they are read again: the kubelet updates a mounted Secret in several steps
// (a new folder, a symlink, a rename, the old folder removed), and an editor's save is often
// several writes.
const SharedMemorySettle = time.Second

// sharedMemoryResync reads the files again even without a change seen: a watch can miss one
// (a folder replaced as a whole, an inotify queue overflow).
const sharedMemoryResync = time.Minute

// sharedMemoryFilesValid says whether the files read last were usable; while they are not,
// the connectors keep being handed the last valid settings. Every replica reads the files,
// so every replica serves the series.
var sharedMemoryFilesValid = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "parley_operator_shared_memory_files_valid",
	Help: "1 if the shared-memory store's password and CA files read last were valid, 0 if not (connectors keep the last valid ones).",
})

func init() { metrics.Registry.MustRegister(sharedMemoryFilesValid) }

// Collectors are the operator's own metrics (besides the engine's and the controllers'), for
// tools and tests that list the metric names the operator serves.
func Collectors() []prometheus.Collector { return []prometheus.Collector{sharedMemoryFilesValid} }

// SharedMemoryWatch keeps the store's settings the reconcilers hand to connectors in step
// with --shared-memory-password-file and --shared-memory-ca-file, so that a rotated
// password (or CA) reaches every connector's engine Secret without a restart of the
// operator. It is a manager Runnable that runs on every replica, leader or not, so that a
// replica that becomes leader hands out what the files say. The URL is a flag: it stays.
type SharedMemoryWatch struct {
	o    Options
	live *controllers.LiveSharedMemory
	log  logr.Logger
	// Settle is how long changes settle before the files are read again
	// (SharedMemorySettle when zero).
	Settle time.Duration
}

// NewSharedMemoryWatch reads the store's settings from o's flags and files: an error stops
// the operator at start. Later, files that become invalid keep the last valid settings. It
// returns nil, and no error, when o names no store.
func NewSharedMemoryWatch(o Options) (*SharedMemoryWatch, error) {
	m, err := o.sharedMemory()
	if err != nil {
		return nil, err
	}
	// Valid from here on, with a store or without one: a gauge left at 0 where no store is
	// set would hold ParleySharedMemoryFilesInvalid firing on every such install.
	sharedMemoryFilesValid.Set(1)
	if m.URL == "" {
		return nil, nil
	}
	return &SharedMemoryWatch{o: o, live: controllers.NewLiveSharedMemory(m), log: ctrl.Log.WithName("shared-memory")}, nil
}

// Live is the settings as they are now, for controllers.Defaults.SharedMemory.
func (w *SharedMemoryWatch) Live() *controllers.LiveSharedMemory { return w.live }

// NeedLeaderElection is false: every replica keeps its settings current.
func (w *SharedMemoryWatch) NeedLeaderElection() bool { return false }

// Start watches the files' folders until ctx is done: a mounted Secret or ConfigMap changes
// by a symlink swap in its folder, which a watch on the file itself would not see.
func (w *SharedMemoryWatch) Start(ctx context.Context) error {
	files := map[string]bool{}
	for _, f := range []string{w.o.SharedMemoryPasswordFile, w.o.SharedMemoryCAFile} {
		if f != "" {
			files[filepath.Dir(filepath.Clean(f))] = true
		}
	}
	if len(files) == 0 {
		return nil // a URL alone: nothing can change
	}
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if fw, err := fsnotify.NewWatcher(); err != nil {
		w.log.Error(err, "cannot watch the shared-memory password and CA files; reading them every minute instead")
	} else {
		defer fw.Close()
		for dir := range files {
			if err := fw.Add(dir); err != nil {
				w.log.Error(err, "cannot watch a folder of the shared-memory password or CA file; reading it every minute instead", "folder", dir)
			}
		}
		events, watchErrs = fw.Events, fw.Errors
	}
	// What changed between the first read (at start) and the watches: read once more now.
	w.reload()
	settle := w.Settle
	if settle <= 0 {
		settle = SharedMemorySettle
	}
	settled := time.NewTimer(time.Hour)
	settled.Stop()
	defer settled.Stop()
	resync := time.NewTicker(sharedMemoryResync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op != fsnotify.Chmod {
				settled.Reset(settle)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			w.log.Error(err, "watching the shared-memory password and CA files")
		case <-settled.C:
			w.reload()
		case <-resync.C:
			w.reload()
		}
	}
}

// reload reads the files again and hands on what changed; files that are not usable (empty,
// missing, no PEM) keep the last valid settings, and say so.
func (w *SharedMemoryWatch) reload() {
	m, err := w.o.sharedMemory()
	if err != nil {
		sharedMemoryFilesValid.Set(0)
		w.log.Error(err, "the shared-memory password or CA file is not usable: connectors keep the last valid ones")
		return
	}
	sharedMemoryFilesValid.Set(1)
	old := w.live.Get()
	var what []string
	if !bytes.Equal(old.Password, m.Password) {
		what = append(what, "password")
	}
	if !bytes.Equal(old.CA, m.CA) {
		what = append(what, "CA")
	}
	if len(what) == 0 {
		return
	}
	w.live.Set(m)
	w.log.Info("the shared-memory store's settings changed: updating every connector's engine Secret", "changed", what, "store", m.URL)
}
