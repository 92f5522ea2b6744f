//go:build linux

package main

// sysSetns is setns(2): the syscall package's frozen table for amd64 predates it. The number
// is from the kernel's arch/x86/entry/syscalls/syscall_64.tbl.
const sysSetns = 308
