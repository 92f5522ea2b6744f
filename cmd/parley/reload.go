package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
)

// served is a connector `parley run` serves, with the rules it runs now.
type served struct {
	name string
	c    *connector.Connector
	prog *rules.Program
}

// reloadSettle is how long file changes must settle before a reload: an editor's save is
// often several writes and a rename.
const reloadSettle = 200 * time.Millisecond

// reloadable says why the files cannot be read again, or "" when they can.
func reloadable(files []string) string {
	switch {
	case len(files) == 0:
		return "the embedded example is not a file"
	case slices.Contains(files, rulesfile.Stdin):
		return "standard input cannot be read again"
	}
	return ""
}

// watchReloads reloads the rules on SIGHUP and, with watch, when the files change, until
// ctx is done. Reloads run one at a time on this goroutine, which alone touches running.
// sinksAt is the fingerprint of the files' ActivitySinks and Secrets the running sinks were
// built from.
func watchReloads(ctx context.Context, stderr io.Writer, o runOptions, portSet, ipSet, watch bool, running []*served, sinksAt string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var w *fileWatcher
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if watch {
		var err error
		if w, err = watchFiles(o.files); err != nil {
			fmt.Fprintf(stderr, "parley: --watch: %v; SIGHUP still reloads\n", err)
		} else {
			defer w.Close()
			events, watchErrs = w.watcher.Events, w.watcher.Errors
		}
	}
	announced := sinksAt // the sinks' fingerprint last said on stderr
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload(stderr, o, portSet, ipSet, running, sinksAt, &announced)
		case ev := <-events:
			if w.concerns(ev) {
				settle.Reset(reloadSettle)
			}
		case err := <-watchErrs:
			fmt.Fprintf(stderr, "parley: --watch: %v\n", err)
		case <-settle.C:
			reload(stderr, o, portSet, ipSet, running, sinksAt, &announced)
		}
	}
}

// reload reads the files again and hands each running connector its new rules: new
// conversations use them, live ones finish on theirs, as a rules edit does in the cluster.
// What a running connector cannot change (where and how it listens or dials) and documents
// added or removed need a restart, and say so; invalid rules keep the running ones. So do
// ActivitySinks and their Secrets, built once from the files as they were at start
// (sinksAt, their fingerprint): a change to them is announced once, a return to them not
// (announced is the fingerprint last announced).
func reload(stderr io.Writer, o runOptions, portSet, ipSet bool, running []*served, sinksAt string, announced *string) {
	progs, sf, err := loadAll(nil, stderr, o.files)
	if err != nil {
		fmt.Fprintf(stderr, "parley: reload refused, the running rules stay: %v\n", err)
		return
	}
	if f := sf.fingerprint(); f != *announced {
		*announced = f
		if f != sinksAt {
			fmt.Fprintln(stderr, "parley: the files' ActivitySinks or Secrets changed: restart parley run to apply them; the running sinks stay")
		}
	}
	fresh := map[string]*rules.Program{}
	for _, l := range progs {
		name := l.name
		if o.name != "" {
			name = o.name
		}
		fresh[name] = l.prog
	}
	for _, s := range running {
		p, ok := fresh[s.name]
		delete(fresh, s.name)
		switch {
		case !ok:
			fmt.Fprintf(stderr, "parley: %s: no longer served by the files (removed or disabled): restart parley run to stop it; it keeps its rules\n", s.name)
		case p.Ref.Hash == s.prog.Ref.Hash:
		default:
			if what := networkChange(s.prog, p, portSet, ipSet); what != "" {
				fmt.Fprintf(stderr, "parley: %s: %s changed: restart parley run to apply it; the running rules stay\n", s.name, what)
				continue
			}
			s.c.Update(p)
			s.prog = p
			fmt.Fprintf(stderr, "parley: %s: rules reloaded (%s): new conversations use them, live ones finish on theirs\n",
				s.name, rules.ShortHash(p.Ref.Hash))
		}
	}
	for name := range fresh {
		fmt.Fprintf(stderr, "parley: %s: new in the files: restart parley run to serve it\n", name)
	}
}

// networkChange names what differs between two programs that a serving connector cannot
// change; "" when nothing does. Flags that override the address make its changes moot.
func networkChange(old, new *rules.Program, portSet, ipSet bool) string {
	was, is := connector.NetworkOf(old), connector.NetworkOf(new)
	if portSet {
		is.Port = was.Port
	}
	if ipSet {
		is.IP = was.IP
	}
	return was.Changed(is)
}

// fileWatcher watches the folders of the rules files: editors often replace a file rather
// than write it, which a watch on the file itself would lose.
type fileWatcher struct {
	watcher *fsnotify.Watcher
	// files are the rules files given (cleaned); dirs the directories given, whose every
	// file counts.
	files, dirs map[string]bool
}

func watchFiles(paths []string) (*fileWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fileWatcher{watcher: w, files: map[string]bool{}, dirs: map[string]bool{}}
	for _, p := range paths {
		p = filepath.Clean(p)
		dir := filepath.Dir(p)
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			fw.dirs[p], dir = true, p
		} else {
			fw.files[p] = true
		}
		if err := w.Add(dir); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", dir, err)
		}
	}
	return fw, nil
}

// concerns says whether an event is about the rules files.
func (fw *fileWatcher) concerns(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	return ev.Op != fsnotify.Chmod && (fw.files[name] || fw.dirs[filepath.Dir(name)])
}

// Close stops watching.
func (fw *fileWatcher) Close() error { return fw.watcher.Close() }
