package sysctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ApplyOptions say where and whether to write.
type ApplyOptions struct {
	DryRun  bool
	Root    string // prefix for the files written; default "/"
	ProcSys string // Linux run-time settings; default "/proc/sys"
	Nofile  uint64 // this process's open-files limit, for the report
}

// Action is one thing Apply did (or would do).
type Action struct {
	What string
	Err  error
}

// Apply installs the profile's files and sets the run-time values that
// fall short now (it never lowers a larger value, except the knobs the
// profile sets exactly). Boot-time tunables and process limits take
// effect at the next boot or service start; the report says so.
func (p Profile) Apply(o ApplyOptions) []Action {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.ProcSys == "" {
		o.ProcSys = "/proc/sys"
	}
	var acts []Action
	do := func(what string, fn func() error) {
		a := Action{What: what}
		if o.DryRun {
			a.What = "would " + what
		} else if fn != nil {
			a.Err = fn()
		}
		acts = append(acts, a)
	}
	for _, f := range p.Files() {
		if strings.Contains(f.Path, " ") { // login.conf: an edit, not a file of ours
			acts = append(acts, Action{What: "add to " + f.Path + " by hand:\n" + f.Content})
			continue
		}
		path := filepath.Join(o.Root, f.Path)
		do("write "+path, func() error {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			return os.WriteFile(path, []byte(f.Content), 0o644)
		})
	}
	var read Reader
	if p.OS == "linux" {
		read = LinuxReader(o.ProcSys, o.Nofile)
	}
	for _, f := range p.Check(readOr(read)) {
		k := f.Knob
		switch {
		case f.OK:
			continue
		case k.Kind == KindLoader:
			acts = append(acts, Action{What: fmt.Sprintf("%s takes effect at the next boot (loader.conf)", k.Key)})
		case k.Kind == KindLimit:
			acts = append(acts, Action{What: fmt.Sprintf("open-files limit %s takes effect when chatd restarts under the new unit (now %s)", k.Value, f.Current)})
		case k.Kind == KindModule:
			acts = append(acts, Action{What: fmt.Sprintf("%s takes effect when nf_conntrack next loads", k.Key)})
		case f.Current == "" && k.Optional:
		case p.OS == "linux":
			path := filepath.Join(o.ProcSys, strings.ReplaceAll(k.Key, ".", "/"))
			do(fmt.Sprintf("set %s = %s (was %s)", k.Key, k.Value, f.Current), func() error {
				return os.WriteFile(path, []byte(k.Value), 0o644)
			})
		default:
			do(fmt.Sprintf("set %s = %s (was %s)", k.Key, k.Value, f.Current), func() error {
				out, err := exec.Command("sysctl", k.Key+"="+k.Value).CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			})
		}
	}
	return acts
}

// readOr falls back to a reader that sees every key as absent (FreeBSD
// apply: values are set through sysctl(8), and Check then counts them all).
func readOr(r Reader) Reader {
	if r != nil {
		return r
	}
	return func(k Knob) (string, error) {
		out, err := exec.Command("sysctl", "-n", k.Key).Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w", k.Key, os.ErrNotExist)
		}
		return strings.TrimSpace(string(out)), nil
	}
}

// ReportActions writes the actions, one per line; it returns an error if
// any failed.
func ReportActions(w io.Writer, acts []Action) error {
	var errs []error
	for _, a := range acts {
		if a.Err != nil {
			fmt.Fprintf(w, "FAILED %s: %v\n", a.What, a.Err)
			errs = append(errs, a.Err)
			continue
		}
		fmt.Fprintln(w, a.What)
	}
	return errors.Join(errs...)
}
