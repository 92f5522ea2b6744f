//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
)

// store allocates the addresses of a subnet to "containerID/ifname" keys, persisted in
// dir/allocations.json. Every operation holds an exclusive flock on dir/lock, as the runtime
// runs plugins for different sandboxes concurrently.
type store struct {
	dir    string
	subnet netip.Prefix
}

// allocations is the file's content.
type allocations struct {
	// Last is the address handed out last: the next search starts after it, so an address
	// freed by a pod being deleted is not reused at once by the next pod.
	Last netip.Addr `json:"last"`
	// Addrs maps each allocated address to its key.
	Addrs map[netip.Addr]string `json:"addrs"`
}

// allocate returns the address of key, allocating a free one if it has none yet (ADD is
// retried by runtimes with the same key, and must then get the same address).
func (s *store) allocate(key string) (netip.Addr, error) {
	var addr netip.Addr
	err := s.update(func(a *allocations) (bool, error) {
		for ip, k := range a.Addrs {
			if k == key {
				addr = ip
				return false, nil
			}
		}
		first, last := s.hostRange()
		start := first
		if a.Last.IsValid() && s.subnet.Contains(a.Last) && a.Last.Compare(last) < 0 {
			start = a.Last.Next()
		}
		for ip := start; ; {
			if _, taken := a.Addrs[ip]; !taken {
				addr = ip
				a.Addrs[ip], a.Last = key, ip
				return true, nil
			}
			if ip = ip.Next(); ip.Compare(last) > 0 {
				ip = first
			}
			if ip == start {
				return false, newError(errExhausted, "no free address in "+s.subnet.String(), nil)
			}
		}
	})
	return addr, err
}

// release frees the address of key; nothing allocated is not an error.
func (s *store) release(key string) error {
	return s.update(func(a *allocations) (bool, error) {
		changed := false
		for ip, k := range a.Addrs {
			if k == key {
				delete(a.Addrs, ip)
				changed = true
			}
		}
		return changed, nil
	})
}

// lookup returns the address allocated to key, if any.
func (s *store) lookup(key string) (addr netip.Addr, ok bool, err error) {
	err = s.update(func(a *allocations) (bool, error) {
		for ip, k := range a.Addrs {
			if k == key {
				addr, ok = ip, true
			}
		}
		return false, nil
	})
	return addr, ok, err
}

// hostRange is the range handed out: the subnet without its network and broadcast addresses
// (127.1.0.0 and 127.1.255.255 by default), which would work on lo but read as mistakes.
func (s *store) hostRange() (first, last netip.Addr) {
	first = s.subnet.Addr().Next()
	b := s.subnet.Addr().As4()
	hostBits := 32 - s.subnet.Bits()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= 1<<hostBits - 1 // the broadcast address
	n--
	return first, netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// update runs fn on the allocations under the lock and writes them back if fn reports a
// change. The file is replaced by a rename so that a crash never leaves it half written.
func (s *store) update(fn func(*allocations) (bool, error)) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return newError(errIO, "creating the data directory", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return newError(errIO, "opening the lock file", err)
	}
	defer lock.Close() // also releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return newError(errIO, "locking the data directory", err)
	}

	path := filepath.Join(s.dir, "allocations.json")
	a := allocations{Addrs: map[netip.Addr]string{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return newError(errIO, "reading the allocations", err)
	default:
		if err := json.Unmarshal(data, &a); err != nil {
			return newError(errDecode, "decoding "+path, err)
		}
		if a.Addrs == nil {
			a.Addrs = map[netip.Addr]string{}
		}
	}

	changed, err := fn(&a)
	if err != nil || !changed {
		return err
	}
	data, err = json.MarshalIndent(a, "", "  ")
	if err != nil {
		return newError(errIO, "encoding the allocations", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return newError(errIO, "writing the allocations", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return newError(errIO, "writing the allocations", err)
	}
	return nil
}
