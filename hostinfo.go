package main

import (
	"bytes"
	"io"
	"os/exec"
)

func commandOutput(name string, args ...string) (io.Reader, error) {
	out, err := exec.Command(name, args...).Output()
	return bytes.NewReader(out), err
}
