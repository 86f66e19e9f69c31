package sysctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// States of a finding.
const (
	StateOK         = "ok"
	StateLow        = "LOW"  // below the profile: raise it
	StateHigh       = "HIGH" // above a value the profile sets exactly
	StateDiffers    = "DIFF" // fields on both sides, or not numbers
	StateAbsent     = "ABSENT"
	StateUnreadable = "UNREADABLE"
)

// Finding is the result of comparing one knob with a host.
type Finding struct {
	Knob    Knob
	Current string // "" when the key is absent
	Source  string // where Current was read, when not the kernel itself
	OK      bool
	State   string
	Detail  string
}

// Reader reads a knob's current value on a host, and where it read it
// when that is not the kernel's own setting (the service's open-files
// limit); it returns an error wrapping os.ErrNotExist when the host lacks
// the key.
type Reader func(k Knob) (value, source string, err error)

// Check compares every knob with what read reports.
func (p Profile) Check(read Reader) []Finding {
	var out []Finding
	for _, k := range p.Knobs {
		f := Finding{Knob: k}
		cur, src, err := read(k)
		f.Source = src
		switch {
		case errors.Is(err, os.ErrNotExist):
			f.OK = k.Optional
			f.State = StateAbsent
			f.Detail = "absent on this host"
			if k.Optional {
				f.State = StateOK
				f.Detail += " (not needed without it)"
			}
		case err != nil:
			f.State = StateUnreadable
			f.Detail = err.Error()
		default:
			f.Current = cur
			f.State, f.Detail = compare(k, cur)
			f.OK = f.State == StateOK
		}
		out = append(out, f)
	}
	return out
}

// compare checks a current value against a knob field by field: each at
// least the wanted number, or equal for exact knobs. A value above an
// exact knob is HIGH, not short: the profile lowers it on purpose (small
// socket buffers, a short FIN-WAIT-2).
func compare(k Knob, cur string) (state, detail string) {
	want, have := strings.Fields(k.Value), strings.Fields(cur)
	if len(have) != len(want) {
		return StateDiffers, fmt.Sprintf("has %d fields, want %d", len(have), len(want))
	}
	low, high := false, false
	for i := range want {
		w, err1 := strconv.ParseUint(want[i], 10, 64)
		h, err2 := strconv.ParseUint(have[i], 10, 64)
		switch {
		case err1 != nil || err2 != nil:
			if want[i] != have[i] {
				return StateDiffers, "differs"
			}
		case h < w:
			low = true
		case h > w && k.Exact:
			high = true
		}
	}
	switch {
	case low && high:
		return StateDiffers, "some fields above, some below; the profile sets " + k.Value
	case low && k.Exact:
		return StateLow, "below the " + k.Value + " the profile sets"
	case low:
		return StateLow, "needs at least " + k.Value
	case high:
		return StateHigh, "above the " + k.Value + " the profile sets"
	}
	return StateOK, "ok"
}

// Failed counts findings that are not OK.
func Failed(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if !f.OK {
			n++
		}
	}
	return n
}

// Report writes a table: a header row, then one row per finding.
func Report(w io.Writer, fs []Finding) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tSETTING\tCURRENT\tPROFILE\tNOTE")
	for _, f := range fs {
		cur := f.Current
		if cur == "" {
			cur = "-"
		}
		note := f.Detail
		if f.Source != "" {
			note += "; from " + f.Source
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.State, f.Knob.Key, cur, f.Knob.Value, note)
	}
	tw.Flush()
}

// LinuxReader reads knobs from a Linux host: sysctls under root (normally
// /proc/sys), module parameters under /sys/module, and the open-files limit
// from nofile (the chatd service's setting).
func LinuxReader(root string, nofile func() (Limit, error)) Reader {
	readSys := func(key string) (string, error) {
		b, err := os.ReadFile(root + "/" + strings.ReplaceAll(key, ".", "/"))
		if err != nil {
			return "", err
		}
		return strings.Join(strings.Fields(string(b)), " "), nil
	}
	return func(k Knob) (string, string, error) {
		switch k.Kind {
		case KindLimit:
			lim, err := nofile()
			if err != nil {
				return "", "", fmt.Errorf("the chatd service's open-files limit: %w", err)
			}
			if lim.Infinity {
				// The kernel refuses any limit above fs.nr_open, so
				// "infinity" is worth that much at most.
				nr, err := readSys("fs.nr_open")
				if err != nil {
					return "", lim.Source, fmt.Errorf("LimitNOFILE=infinity, and fs.nr_open: %w", err)
				}
				return nr, "LimitNOFILE=infinity, at most fs.nr_open; " + lim.Source, nil
			}
			return strconv.FormatUint(lim.Value, 10), lim.Source, nil
		case KindModule:
			mod, param, _ := strings.Cut(k.Key, ".")
			b, err := os.ReadFile("/sys/module/" + mod + "/parameters/" + param)
			return strings.TrimSpace(string(b)), "", err
		}
		v, err := readSys(k.Key)
		return v, "", err
	}
}

// SysctlAReader reads knobs from the text of `sysctl -a` (FreeBSD prints
// "key: value"; Linux "key = value"), as saved from a host. Loader tunables
// appear there too once booted. The open-files limit comes from nofile
// (the rc script's chatd_nofile), capped as the kernel caps it at
// kern.maxfilesperproc.
func SysctlAReader(r io.Reader, nofile func() (Limit, error)) (Reader, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			k, v, ok = strings.Cut(line, " = ")
		}
		if ok {
			vals[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), " ")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sysctl: read sysctl -a output: %w", err)
	}
	return func(k Knob) (string, string, error) {
		if k.Kind == KindLimit {
			lim, err := nofile()
			if err != nil {
				return "", "", fmt.Errorf("the chatd service's open-files limit: %w", err)
			}
			// setrlimit(2) on FreeBSD silently lowers a limit above
			// kern.maxfilesperproc to it.
			if per, err := strconv.ParseUint(vals["kern.maxfilesperproc"], 10, 64); err == nil && (lim.Infinity || lim.Value > per) {
				src := lim.Source + " (unlimited), capped by kern.maxfilesperproc"
				if !lim.Infinity {
					src = fmt.Sprintf("%s (%d), capped by kern.maxfilesperproc", lim.Source, lim.Value)
				}
				return strconv.FormatUint(per, 10), src, nil
			}
			if lim.Infinity {
				return "", lim.Source, errors.New("unlimited, and kern.maxfilesperproc unknown")
			}
			return strconv.FormatUint(lim.Value, 10), lim.Source, nil
		}
		v, ok := vals[k.Key]
		if !ok {
			return "", "", fmt.Errorf("%s: %w", k.Key, os.ErrNotExist)
		}
		return v, "", nil
	}, nil
}
