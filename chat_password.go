package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// minPassword is the server's rule (PROTOCOL.md: 8 to 128 bytes), checked
// here first so that a short password is explained, not refused.
const minPassword, maxPassword = 8, 128

var errPasswordRule = fmt.Errorf("passwords are %d characters or more (at most %d bytes)", minPassword, maxPassword)

// checkPassword applies the server's rule before connecting. A login with
// a short password can only fail, so it is explained the same way.
func checkPassword(pw string, register bool) error {
	if len(pw) < minPassword || len(pw) > maxPassword {
		if register {
			return fmt.Errorf("cannot register: %w", errPasswordRule)
		}
		return fmt.Errorf("wrong password: %w", errPasswordRule)
	}
	return nil
}

// askPassword reads the password: from the terminal without echo when
// stdin is one (asking again while it breaks the rule), else a line from
// in (a pipe or a script).
func askPassword(in *bufio.Reader, tty *os.File, prompt io.Writer, register bool) (string, error) {
	fd := int(tty.Fd())
	if !term.IsTerminal(fd) {
		line, err := in.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	ask := "password: "
	if register {
		ask = fmt.Sprintf("choose a password (%d characters or more): ", minPassword)
	}
	for tries := 0; ; tries++ {
		fmt.Fprint(prompt, ask)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		pw := string(b)
		if len(pw) >= minPassword && len(pw) <= maxPassword {
			return pw, nil
		}
		if tries == 2 {
			return "", errors.New(errPasswordRule.Error())
		}
		fmt.Fprintf(prompt, "%v; try again\n", errPasswordRule)
	}
}
