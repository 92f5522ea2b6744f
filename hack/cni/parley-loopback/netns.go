//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread that has joined the network namespace at path.
//
// setns(2) moves only the calling thread, so fn runs on a goroutine locked to its thread, and
// that goroutine exits without unlocking: the Go runtime then ends the thread instead of handing
// a thread in the pod's namespace to other goroutines.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// setupLoopback brings lo up and adds addr to it. Run inside the pod's namespace.
func setupLoopback(addr netip.Addr) error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	// struct ifinfomsg: family, pad, type, index, flags, change.
	link := make([]byte, 16)
	binary.NativeEndian.PutUint32(link[4:], uint32(lo.Index))
	binary.NativeEndian.PutUint32(link[8:], syscall.IFF_UP)
	binary.NativeEndian.PutUint32(link[12:], syscall.IFF_UP)
	if err := netlinkRequest(syscall.RTM_NEWLINK, 0, link); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}

	// struct ifaddrmsg: family, prefix length, flags, scope, index; then the address as both
	// IFA_LOCAL and IFA_ADDRESS, as ip-address(8) sends it. Host scope: like 127.0.0.1, the
	// address means nothing outside the namespace.
	ip := addr.As4()
	msg := []byte{syscall.AF_INET, 32, 0, syscall.RT_SCOPE_HOST, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(msg[4:], uint32(lo.Index))
	msg = appendAttr(msg, syscall.IFA_LOCAL, ip[:])
	msg = appendAttr(msg, syscall.IFA_ADDRESS, ip[:])
	// NLM_F_REPLACE makes a repeated ADD for the same sandbox succeed.
	if err := netlinkRequest(syscall.RTM_NEWADDR, syscall.NLM_F_CREATE|syscall.NLM_F_REPLACE, msg); err != nil {
		return fmt.Errorf("adding %s to lo: %w", addr, err)
	}
	return nil
}

// checkLoopback reports whether lo is up and holds addr. Run inside the pod's namespace.
func checkLoopback(addr netip.Addr) error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return err
	}
	if lo.Flags&net.FlagUp == 0 {
		return newError(errInvalidConfig, "lo is down", nil)
	}
	addrs, err := lo.Addrs()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(addrs, func(a net.Addr) bool {
		n, ok := a.(*net.IPNet)
		return ok && n.IP.Equal(addr.AsSlice())
	}) {
		return newError(errInvalidConfig, fmt.Sprintf("lo does not hold %s", addr), nil)
	}
	return nil
}

// appendAttr appends a netlink route attribute (struct rtattr and its data, padded to 4 bytes).
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	hdr := make([]byte, syscall.SizeofRtAttr)
	binary.NativeEndian.PutUint16(hdr[0:], uint16(syscall.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	b = append(append(b, hdr...), data...)
	for len(b)%syscall.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// netlinkRequest sends one rtnetlink request from the current thread's network namespace
// and waits for the kernel's acknowledgement.
func netlinkRequest(typ uint16, flags uint16, payload []byte) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return err
	}

	const seq = 1
	msg := make([]byte, syscall.NLMSG_HDRLEN, syscall.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(syscall.NLMSG_HDRLEN+len(payload)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK|flags)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	msg = append(msg, payload...)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return err
	}

	buf := make([]byte, syscall.Getpagesize())
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq || m.Header.Type != syscall.NLMSG_ERROR {
				continue
			}
			// struct nlmsgerr: a negative errno, or 0 for the acknowledgement.
			if len(m.Data) < 4 {
				return errors.New("short netlink error message")
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return syscall.Errno(errno)
			}
			return nil
		}
	}
}
