package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/chatd/chatd/internal/store"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatd/chatd/internal/server"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// backupCmd asks a running server, on its admin listener, for a
// consistent copy of its data folder: only the server holding the folder
// can take one (Pebble's lock, and the writes it has in memory).
func backupCmd(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:7421", "the running server's admin address")
	to := fs.String("to", "", "new folder to write the backup into, on the server's machine (must not exist; same file system as the data folder makes it near-instant)")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *to == "" {
		return usageError{errors.New("backup: -to is required\nRun \"chatd backup -h\" for the flags")}
	}
	dir, err := filepath.Abs(*to) // the server resolves paths from its own working folder
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	rep, err := requestBackup(&http.Client{Timeout: 30 * time.Minute}, *admin, dir)
	if err != nil {
		return err
	}
	fmt.Printf("backup written to %s: %d files, %s, in %s (noise key included: %v, VAPID key included: %v)\n",
		rep.Dir, rep.Files, humanBytes(rep.Bytes), rep.Took.Round(time.Millisecond), rep.NoiseKey, rep.VAPIDKey)
	return nil
}

func requestBackup(c *http.Client, admin, dir string) (server.BackupReport, error) {
	var rep server.BackupReport
	resp, err := c.PostForm("http://"+admin+"/backup", url.Values{"dir": {dir}})
	if err != nil {
		return rep, fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if !strings.HasPrefix(msg, "backup:") { // the server's own errors say it
			msg = "backup: " + msg
		}
		return rep, errors.New(msg)
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("backup: %w", err)
	}
	return rep, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// restoreCmd puts a backup in place as a data folder, for a stopped server.
func restoreCmd(args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	from := fs.String("from", "", "the backup folder (written by chatd backup)")
	data := fs.String("data", "chatd-data", "the data folder to restore into")
	force := fs.Bool("force", false, "replace a data folder that is not empty; the old one is moved aside to DATA.before-restore-TIME, never deleted")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *from == "" {
		return usageError{errors.New("restore: -from is required\nRun \"chatd restore -h\" for the flags")}
	}
	aside, err := restore(*from, *data, *force, time.Now())
	if err != nil {
		return err
	}
	if aside != "" {
		fmt.Printf("the old data folder was moved to %s\n", aside)
	}
	fmt.Printf("restored %s into %s; start the server on it (chatd serve -data %s)\n", *from, *data, *data)
	return nil
}

// restore copies the backup in from into data. It refuses while a server
// holds data's lock, and refuses a data folder that is not empty unless
// force, when it moves it aside (returned) rather than delete anything.
func restore(from, data string, force bool, now time.Time) (aside string, err error) {
	if err := looksLikeBackup(from); err != nil {
		return "", err
	}
	empty, err := emptyOrMissing(data)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	if !empty {
		if err := notInUse(data); err != nil {
			return "", err
		}
		if !force {
			return "", fmt.Errorf("restore: %s is not empty; stop its server and add -force to move it aside", data)
		}
		aside = fmt.Sprintf("%s.before-restore-%s", filepath.Clean(data), now.UTC().Format("20060102T150405Z"))
		if err := os.Rename(data, aside); err != nil {
			return "", fmt.Errorf("restore: move the old data folder aside: %w", err)
		}
	}
	// Copy into a sibling first and rename it in place: a restore cut short
	// leaves no half data folder a server could start on.
	clean := filepath.Clean(data)
	tmp, err := os.MkdirTemp(filepath.Dir(clean), filepath.Base(clean)+".restoring-")
	if err != nil {
		return aside, fmt.Errorf("restore: %w", err)
	}
	if err := copyTree(from, tmp); err != nil {
		return aside, fmt.Errorf("restore: copy %s (the partial copy is in %s): %w", from, tmp, err)
	}
	if empty {
		os.Remove(clean) // an empty folder, if any: Rename needs the name free
	}
	if err := os.Rename(tmp, clean); err != nil {
		return aside, fmt.Errorf("restore: %w", err)
	}
	// The rename is durable only once the parent folder is synced.
	if d, err := os.Open(filepath.Dir(clean)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return aside, fmt.Errorf("restore: sync %s: %w", filepath.Dir(clean), err)
		}
	}
	return aside, nil
}

// looksLikeBackup checks dir holds a Pebble database: a MANIFEST and an
// OPTIONS file, as a checkpoint has.
func looksLikeBackup(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var manifest, options bool
	for _, e := range entries {
		manifest = manifest || strings.HasPrefix(e.Name(), "MANIFEST-")
		options = options || strings.HasPrefix(e.Name(), "OPTIONS-")
	}
	if !manifest || !options {
		return fmt.Errorf("restore: %s is not a chatd backup (no Pebble MANIFEST and OPTIONS)", dir)
	}
	return nil
}

func emptyOrMissing(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return len(entries) == 0, err
}

// notInUse takes and releases Pebble's lock on the data folder: a running
// server (in this process or another) holds it.
func notInUse(dir string) error {
	name := filepath.Join(dir, "LOCK")
	if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	l, err := vfs.Default.Lock(name)
	if err != nil {
		return fmt.Errorf("restore: a server is using %s (stop it first): %w", dir, err)
	}
	return l.Close()
}

// copyTree copies the files of src into a new folder dst, keeping
// permissions, each synced.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		return store.CopyFile(path, target)
	})
}
