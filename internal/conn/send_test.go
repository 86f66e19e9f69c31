package conn

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
)

// TestWriteNonblocking: a socket is written with send(2) until it is full,
// a closed peer gives an error, and a pipe, which send(2) refuses
// (ENOTSOCK), is written with write(2).
func TestWriteNonblocking(t *testing.T) {
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var pp [2]int
	if err := syscall.Pipe(pp[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(pp[0])
	defer syscall.Close(pp[1])
	defer syscall.Close(sp[0])
	for _, fd := range []int{sp[0], pp[1]} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name string
		w, r int
	}{{"socket", sp[0], sp[1]}, {"pipe", pp[1], pp[0]}} {
		want := []byte("frame for " + c.name)
		if n, err := writeNonblocking(c.w, want); n != len(want) || err != nil {
			t.Fatalf("%s: writeNonblocking = %d, %v", c.name, n, err)
		}
		got := make([]byte, 64)
		n, err := syscall.Read(c.r, got)
		if err != nil || !bytes.Equal(got[:n], want) {
			t.Fatalf("%s: read %q, %v; want %q", c.name, got[:max(n, 0)], err, want)
		}
	}

	// Full: it returns what fitted, with no error.
	big := make([]byte, 8<<20)
	n, err := writeNonblocking(sp[0], big)
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("full socket: writeNonblocking = %d, %v; want a part and no error", n, err)
	}

	syscall.Close(sp[1])
	if _, err := writeNonblocking(sp[0], []byte("x")); !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("closed peer: writeNonblocking error %v; want EPIPE or ECONNRESET", err)
	}
}
