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
	"bytes"
	"net"
	"syscall"
	"testing"
	"unsafe"
)

// TestRecvOneSocketAndPipe: readv with one buffer reads a socket through
// recvfrom and a pipe, which recvfrom refuses (ENOTSOCK), through readv;
// both say EAGAIN when empty and 0, nil at the peer's close.
func TestRecvOneSocketAndPipe(t *testing.T) {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pp [2]int
	if err := syscall.Pipe(pp[:]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		r, w   int
		socket bool
	}{{"socket", sp[0], sp[1], true}, {"pipe", pp[0], pp[1], false}} {
		t.Run(c.name, func(t *testing.T) {
			defer syscall.Close(c.r)
			if err := syscall.SetNonblock(c.r, true); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			ivs := make([]syscall.Iovec, 1)
			read := func() (int, error) { return readv(c.r, [][]byte{buf}, ivs) }
			if _, ok, _ := recvOne(c.r, syscall.Iovec{Base: &buf[0], Len: 1}); ok != c.socket {
				t.Fatalf("recvOne ok = %v on a %s", ok, c.name)
			}
			if n, err := read(); err != syscall.EAGAIN {
				t.Fatalf("empty: readv = %d, %v; want EAGAIN", n, err)
			}
			want := []byte("hello, patch 16")
			if _, err := syscall.Write(c.w, want); err != nil {
				t.Fatal(err)
			}
			n, err := read()
			if err != nil || n < 0 || !bytes.Equal(buf[:n], want) {
				t.Fatalf("readv = %d, %v; want %q", n, err, want)
			}
			if ivs[0].Base != nil {
				t.Fatal("the iovec still points at the buffer after the read")
			}
			syscall.Close(c.w)
			if n, err := read(); n != 0 || err != nil {
				t.Fatalf("after the peer's close: readv = %d, %v; want 0, nil", n, err)
			}
		})
	}
}

// BenchmarkReadOneBuffer: one 130-byte write and one read of it on a
// loopback TCP connection, the read made by readv(2) or by patch 16's
// recvfrom(2). go test -run '^$' -bench ReadOneBuffer -count 4
func BenchmarkReadOneBuffer(b *testing.B) {
	for _, c := range []struct {
		name string
		read func(fd int, buf []byte, ivs []syscall.Iovec) (int, error)
	}{
		{"readv", func(fd int, buf []byte, ivs []syscall.Iovec) (int, error) {
			ivs[0].Base, ivs[0].Len = &buf[0], uint64(len(buf))
			r, _, e := syscall.RawSyscall(syscall.SYS_READV, uintptr(fd), uintptr(unsafe.Pointer(&ivs[0])), 1)
			if e != 0 {
				return int(r), e
			}
			return int(r), nil
		}},
		{"recvfrom", func(fd int, buf []byte, ivs []syscall.Iovec) (int, error) {
			return readv(fd, [][]byte{buf}, ivs)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			w, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			r, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			f, err := r.(*net.TCPConn).File() // loopback queues a write before it returns: the read finds it
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			fd := int(f.Fd())
			msg, buf, ivs := make([]byte, 130), make([]byte, 4096), make([]syscall.Iovec, 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
				if n, err := c.read(fd, buf, ivs); n != len(msg) || err != nil {
					b.Fatalf("read %d, %v", n, err)
				}
			}
		})
	}
}
