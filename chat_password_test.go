package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's two ends: what a terminal emulator
// holds (the master) and what a program sees as its terminal (the slave).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pty: %v", err)
	}
	return m, s
}

// TestPasswordNotEchoed types a password at a real terminal, as a person
// would: the terminal shows the prompt and not one character of the
// password, and askPassword returns it. With echo left on, the terminal
// line discipline would copy the typed characters back to the screen.
func TestPasswordNotEchoed(t *testing.T) {
	master, slave := openPTY(t)
	defer master.Close()

	var screen bytes.Buffer
	read := make(chan struct{})
	go func() { // everything the terminal would show, until the slave closes
		defer close(read)
		io.Copy(&screen, master)
	}()
	type result struct {
		pw  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := askPassword(bufio.NewReader(slave), slave, slave, false)
		done <- result{pw, err}
	}()
	// A person types once the prompt is up; here, once the terminal's
	// echo is off (the prompt comes just before that).
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the terminal's echo was never turned off")
		}
		time.Sleep(time.Millisecond) // polling the terminal's mode, with a deadline
	}
	const secret = "hunter22-correct-horse"
	if _, err := master.Write([]byte(secret + "\n")); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		slave.Close()
		t.Fatal("askPassword did not return within 10s")
	}
	slave.Close()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal did not close")
	}
	if r.err != nil || r.pw != secret {
		t.Fatalf("askPassword = %q, %v; want the typed password", r.pw, r.err)
	}
	if !bytes.Contains(screen.Bytes(), []byte("password: ")) {
		t.Errorf("the terminal showed %q: no prompt", screen.String())
	}
	if bytes.Contains(screen.Bytes(), []byte("hunter")) {
		t.Errorf("the terminal showed %q: the password was echoed", screen.String())
	}
}
