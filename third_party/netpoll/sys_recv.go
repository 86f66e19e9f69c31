// Copyright 2026 chatd authors. Patch 16 (PATCHES.md).
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//    http://www.apache.org/licenses/LICENSE-2.0

//go:build !windows
// +build !windows

package netpoll

import (
	"syscall"
	"unsafe"
)

// recvOne reads into one buffer with recvfrom(2) rather than readv(2)
// (patch 16). A connection's read books a single buffer (connection.inputs),
// and on a socket recvfrom goes straight to the socket layer: it skips
// readv's iovec import and the file layer's checks (fdget_pos, the
// rw_verify_area and fsnotify of vfs_readv), tens of nanoseconds of a
// system call that is made for every read. ok is false when fd is not a
// socket (a pipe given to NewFDConnection): the caller falls back to readv,
// so such a descriptor pays one refused recvfrom per read. Knowing the kind
// of descriptor here would take a flag through every caller of readv for
// a case a server's sockets never meet.
func recvOne(fd int, iv syscall.Iovec) (n int, ok bool, err error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(iv.Base)), uintptr(iv.Len), 0, 0, 0)
	switch e {
	case 0:
		return int(r), true, nil
	case syscall.ENOTSOCK:
		return 0, false, nil
	}
	return int(r), true, e
}
