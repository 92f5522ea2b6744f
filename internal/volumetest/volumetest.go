// Package volumetest writes files as the kubelet writes a Secret or ConfigMap volume, for
// tests of code that must see such a volume change: each key is a symlink to ..data/<key>,
// ..data a symlink to a folder of this version, and an update makes a new folder and swaps
// ..data to it in one rename, then removes the old folder. Nothing is written in place, so
// a watch on a key's file alone would not see an update.
package volumetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Volume is a mounted volume's folder.
type Volume struct {
	t       testing.TB
	Dir     string
	version int
}

// New makes an empty volume in the test's temporary folder.
func New(t testing.TB) *Volume {
	t.Helper()
	return &Volume{t: t, Dir: t.TempDir()}
}

// Path is where the file of key is.
func (v *Volume) Path(key string) string { return filepath.Join(v.Dir, key) }

// Write makes the volume hold data, key by key, as the kubelet's update would: keys no
// longer in data disappear.
func (v *Volume) Write(data map[string]string) {
	v.t.Helper()
	if err := v.write(data); err != nil {
		v.t.Fatal(err)
	}
}

func (v *Volume) write(data map[string]string) error {
	v.version++
	version := fmt.Sprintf("..version_%d", v.version)
	if err := os.Mkdir(filepath.Join(v.Dir, version), 0o755); err != nil {
		return err
	}
	for k, s := range data {
		if err := os.WriteFile(filepath.Join(v.Dir, version, k), []byte(s), 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(v.Dir, "..data"))
	tmp := filepath.Join(v.Dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(v.Dir, "..data")); err != nil {
		return err
	}
	for k := range data {
		link := filepath.Join(v.Dir, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(v.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, kept := data[e.Name()]; !kept && e.Type()&os.ModeSymlink != 0 && e.Name() != "..data" {
			if err := os.Remove(filepath.Join(v.Dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(v.Dir, old))
	}
	return nil
}
