package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FreeBSD reads its settings from files it owns (/etc/sysctl.conf,
// /boot/loader.conf, /etc/rc.conf.d/chatd), not from directories of
// drop-ins, so the profile goes into those files as a block between two
// marker lines. Writing it again replaces the block in place and leaves
// every other line alone.
const (
	BlockBegin = "# BEGIN chatd sysctl profile"
	BlockEnd   = "# END chatd sysctl profile"
)

// MergeBlock returns existing with its chatd block replaced by body (or
// body appended as a new block when there is none). body holds the lines
// between the markers.
func MergeBlock(existing, body string) (string, error) {
	block := BlockBegin + "\n" + strings.TrimRight(body, "\n") + "\n" + BlockEnd + "\n"
	lines := strings.SplitAfter(existing, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimRight(l, "\r\n") {
		case BlockBegin:
			if begin >= 0 {
				return "", fmt.Errorf("two %q lines (lines %d and %d): fix the file by hand", BlockBegin, begin+1, i+1)
			}
			begin = i
		case BlockEnd:
			if begin < 0 || end >= 0 {
				return "", fmt.Errorf("%q on line %d without its %q", BlockEnd, i+1, BlockBegin)
			}
			end = i
		}
	}
	switch {
	case begin >= 0 && end < 0:
		// Replacing up to the end of the file could eat the operator's own
		// settings; refuse instead.
		return "", fmt.Errorf("%q on line %d has no %q", BlockBegin, begin+1, BlockEnd)
	case begin < 0:
		if existing != "" && !strings.HasSuffix(existing, "\n") {
			existing += "\n"
		}
		if existing != "" {
			existing += "\n"
		}
		return existing + block, nil
	}
	return strings.Join(lines[:begin], "") + block + strings.Join(lines[end+1:], ""), nil
}

// WriteBlock merges body into the file at path as the chatd block,
// creating the file if it is missing. The new contents replace the old by
// rename, so a crash leaves either the old file or the new one, and the
// file keeps its permissions.
func WriteBlock(path, body string) error {
	old, err := os.ReadFile(path)
	mode := os.FileMode(0o644)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case os.IsNotExist(err):
	default:
		return fmt.Errorf("read %s: %w", path, err)
	}
	merged, err := MergeBlock(string(old), body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if merged == string(old) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".chatd-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.WriteString(merged); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
