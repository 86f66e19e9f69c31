package sysctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Finding is the result of comparing one knob with a host.
type Finding struct {
	Knob    Knob
	Current string // "" when the key is absent
	OK      bool
	Detail  string
}

// Reader reads a knob's current value on a host; it returns an error
// wrapping os.ErrNotExist when the host lacks the key.
type Reader func(k Knob) (string, error)

// Check compares every knob with what read reports.
func (p Profile) Check(read Reader) []Finding {
	var out []Finding
	for _, k := range p.Knobs {
		f := Finding{Knob: k}
		cur, err := read(k)
		switch {
		case errors.Is(err, os.ErrNotExist):
			f.OK = k.Optional
			f.Detail = "absent on this host"
			if k.Optional {
				f.Detail += " (not needed without it)"
			}
		case err != nil:
			f.Detail = "unreadable: " + err.Error()
		default:
			f.Current = cur
			f.OK, f.Detail = compare(k, cur)
		}
		out = append(out, f)
	}
	return out
}

// compare checks a current value against a knob: field by field, each at
// least the wanted number, or equal for exact knobs.
func compare(k Knob, cur string) (bool, string) {
	want, have := strings.Fields(k.Value), strings.Fields(cur)
	if len(have) != len(want) {
		return false, fmt.Sprintf("has %d fields, want %d", len(have), len(want))
	}
	for i := range want {
		w, err1 := strconv.ParseUint(want[i], 10, 64)
		h, err2 := strconv.ParseUint(have[i], 10, 64)
		if err1 != nil || err2 != nil {
			if want[i] != have[i] {
				return false, "differs"
			}
			continue
		}
		if k.Exact && h != w {
			return false, fmt.Sprintf("is %s, the profile sets %s", cur, k.Value)
		}
		if !k.Exact && h < w {
			return false, fmt.Sprintf("is %s, needs at least %s", cur, k.Value)
		}
	}
	return true, "ok"
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

// Report writes one line per finding.
func Report(w io.Writer, fs []Finding) {
	for _, f := range fs {
		mark := "ok   "
		if !f.OK {
			mark = "SHORT"
		}
		cur := f.Current
		if cur == "" {
			cur = "-"
		}
		fmt.Fprintf(w, "%s %-34s %-28s want %-28s %s\n", mark, f.Knob.Key, cur, f.Knob.Value, f.Detail)
	}
}

// LinuxReader reads knobs from a Linux host: sysctls under root (normally
// /proc/sys), module parameters under /sys/module, and the open-files limit
// from nofile (the running process's soft limit, as chatd would have it).
func LinuxReader(root string, nofile uint64) Reader {
	return func(k Knob) (string, error) {
		switch k.Kind {
		case KindLimit:
			return strconv.FormatUint(nofile, 10), nil
		case KindModule:
			mod, param, _ := strings.Cut(k.Key, ".")
			b, err := os.ReadFile("/sys/module/" + mod + "/parameters/" + param)
			return strings.TrimSpace(string(b)), err
		}
		b, err := os.ReadFile(root + "/" + strings.ReplaceAll(k.Key, ".", "/"))
		if err != nil {
			return "", err
		}
		return strings.Join(strings.Fields(string(b)), " "), nil
	}
}

// SysctlAReader reads knobs from the text of `sysctl -a` (FreeBSD prints
// "key: value"; Linux "key = value"), as saved from a host. Loader tunables
// appear there too once booted. The process limit is taken from
// kern.maxfilesperproc when nofile is 0.
func SysctlAReader(r io.Reader, nofile uint64) (Reader, error) {
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
	return func(k Knob) (string, error) {
		if k.Kind == KindLimit {
			if nofile > 0 {
				return strconv.FormatUint(nofile, 10), nil
			}
			k = Knob{Key: "kern.maxfilesperproc"}
		}
		v, ok := vals[k.Key]
		if !ok {
			return "", fmt.Errorf("%s: %w", k.Key, os.ErrNotExist)
		}
		return v, nil
	}, nil
}
