package sysctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// ApplyOptions say where and whether to write.
type ApplyOptions struct {
	DryRun  bool
	Root    string // prefix for the files written; default "/"
	ProcSys string // Linux run-time settings; default "/proc/sys"
	// Nofile reports the chatd service's open-files limit (see
	// ServiceFiles); nil: unknown.
	Nofile func() (Limit, error)
	// Read overrides how current values are read (tests); nil: /proc/sys
	// on Linux, sysctl(8) on FreeBSD.
	Read Reader
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
	if o.Nofile == nil {
		o.Nofile = func() (Limit, error) { return Limit{}, errors.New("not known") }
	}
	for _, f := range p.Files() {
		path := filepath.Join(o.Root, f.Path)
		if f.Block {
			do(fmt.Sprintf("write the chatd block in %s (between %q and %q; other lines untouched)", path, BlockBegin, BlockEnd), func() error {
				return WriteBlock(path, f.Content)
			})
			continue
		}
		do("write "+path, func() error {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			return os.WriteFile(path, []byte(f.Content), 0o644)
		})
	}
	read := o.Read
	switch {
	case read != nil:
	case p.OS == "linux":
		read = LinuxReader(o.ProcSys, o.Nofile)
	default:
		read = sysctlCommandReader(o.Nofile)
	}
	for _, f := range p.Check(read) {
		k := f.Knob
		switch {
		case f.OK:
			continue
		case k.Kind == KindLoader:
			acts = append(acts, Action{What: fmt.Sprintf("%s = %s takes effect at the next boot (/boot/loader.conf)", k.Key, k.Value)})
		case k.Kind == KindLimit:
			acts = append(acts, Action{What: limitNote(p.OS, k, f)})
		case k.Kind == KindModule:
			acts = append(acts, Action{What: fmt.Sprintf("%s takes effect when nf_conntrack next loads", k.Key)})
		case f.Current == "" && k.Optional:
		case p.OS == "linux":
			path := filepath.Join(o.ProcSys, strings.ReplaceAll(k.Key, ".", "/"))
			do(fmt.Sprintf("set %s = %s (was %s)", k.Key, k.Value, f.Current), func() error {
				return os.WriteFile(path, []byte(k.Value), 0o644)
			})
		default:
			was := f.Current
			if was == "" {
				was = "absent"
			}
			do(fmt.Sprintf("set %s = %s (was %s)", k.Key, k.Value, was), func() error {
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

// limitNote says when a new open-files limit reaches chatd: the service
// manager applies it at start, so only a restart does.
func limitNote(os string, k Knob, f Finding) string {
	now := f.Current
	if now == "" {
		now = "unknown: " + f.Detail
	} else if f.Source != "" {
		now += ", from " + f.Source
	}
	if os == "freebsd" {
		return fmt.Sprintf("open-files limit %s (chatd_nofile in /etc/rc.conf.d/chatd) takes effect at the next `service chatd restart` (now %s)", k.Value, now)
	}
	return fmt.Sprintf("open-files limit %s (LimitNOFILE in the unit's drop-in) takes effect at the next `systemctl daemon-reload && systemctl restart chatd` (now %s)", k.Value, now)
}

// sysctlCommandReader reads values through sysctl(8), as FreeBSD apply
// does, and the open-files limit from nofile.
func sysctlCommandReader(nofile func() (Limit, error)) Reader {
	return func(k Knob) (string, string, error) {
		if k.Kind == KindLimit {
			lim, err := nofile()
			if err != nil {
				return "", "", fmt.Errorf("the chatd service's open-files limit: %w", err)
			}
			return strconv.FormatUint(lim.Value, 10), lim.Source, nil
		}
		out, err := exec.Command("sysctl", "-n", k.Key).Output()
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", k.Key, os.ErrNotExist)
		}
		return strings.TrimSpace(string(out)), "", nil
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
