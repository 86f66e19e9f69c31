package sysctl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Limit is the open-files limit the chatd service starts with and where
// it was read. It is the service's setting, not the limit of the shell
// that runs `chatd sysctl check`: a login shell's 1024 says nothing about
// what systemd or rc.subr give chatd.
type Limit struct {
	Value    uint64
	Infinity bool // LimitNOFILE=infinity: the kernel's ceiling applies
	Source   string
}

// ServiceFiles says where to look for the service's limit. Paths are
// parameters so tests never read the host's /etc.
type ServiceFiles struct {
	// Linux: unit directories searched in systemd's order, and the unit
	// shipped with chatd (deploy/chatd.service) for a host where none is
	// installed yet.
	UnitDirs    []string
	ShippedUnit []byte
	// Systemctl runs `systemctl show -p LoadState -p LimitNOFILE chatd`
	// when systemd is the running init; nil otherwise.
	Systemctl func() ([]byte, error)

	// FreeBSD: the files load_rc_config reads, in order (the last
	// assignment wins), the installed rc script, and the shipped one
	// (deploy/chatd.rc).
	RcConf    []string
	RcScript  string
	ShippedRc []byte
}

// DefaultServiceFiles are the standard locations on each system.
func DefaultServiceFiles(shippedUnit, shippedRc []byte) ServiceFiles {
	return ServiceFiles{
		UnitDirs:    []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"},
		ShippedUnit: shippedUnit,
		RcConf:      []string{"/etc/rc.conf", "/etc/rc.conf.local", "/etc/rc.conf.d/chatd", "/usr/local/etc/rc.conf.d/chatd"},
		RcScript:    "/usr/local/etc/rc.d/chatd",
		ShippedRc:   shippedRc,
	}
}

// Fixed returns a limit source that always reports lim (tests, and a
// limit given on the command line).
func Fixed(lim Limit) func() (Limit, error) {
	return func() (Limit, error) { return lim, nil }
}

// ServiceLimit finds the open-files limit chatd's service gets on os.
func (sf ServiceFiles) ServiceLimit(os string) (Limit, error) {
	if os == "freebsd" {
		return sf.rcLimit()
	}
	return sf.unitLimit()
}

func (sf ServiceFiles) unitLimit() (Limit, error) {
	if sf.Systemctl != nil {
		out, err := sf.Systemctl()
		if err == nil {
			props := map[string]string{}
			for _, l := range strings.Split(string(out), "\n") {
				if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
					props[k] = v
				}
			}
			// An unknown unit still shows the manager's default limit;
			// only a loaded one says what chatd gets.
			if props["LoadState"] == "loaded" && props["LimitNOFILE"] != "" {
				return parseNofile(props["LimitNOFILE"], "systemctl show chatd (LimitNOFILE of the loaded unit)")
			}
		}
	}
	var unit string
	for _, d := range sf.UnitDirs {
		p := filepath.Join(d, "chatd.service")
		if _, err := os.Stat(p); err == nil {
			unit = p
			break
		}
	}
	var lim Limit
	var found bool
	var err error
	var sources []string
	read := func(name string, b []byte) error {
		v, ok := lastAssignment(b, "LimitNOFILE")
		if !ok {
			return nil
		}
		if lim, err = parseNofile(v, ""); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		found = true
		sources = append(sources, name)
		return nil
	}
	switch {
	case unit != "":
		b, err := os.ReadFile(unit)
		if err != nil {
			return Limit{}, err
		}
		if err := read(unit, b); err != nil {
			return Limit{}, err
		}
	case sf.ShippedUnit != nil:
		if err := read("deploy/chatd.service (shipped with chatd, not installed)", sf.ShippedUnit); err != nil {
			return Limit{}, err
		}
	}
	// Drop-ins (such as the 60-limits.conf `chatd sysctl apply` writes)
	// apply wherever the unit lives; the last in name order wins.
	for _, d := range sf.UnitDirs {
		names, _ := filepath.Glob(filepath.Join(d, "chatd.service.d", "*.conf"))
		sort.Strings(names)
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return Limit{}, err
			}
			if err := read(n, b); err != nil {
				return Limit{}, err
			}
		}
	}
	if !found {
		if unit == "" && sf.ShippedUnit == nil {
			return Limit{}, fmt.Errorf("no chatd.service in %s: %w", strings.Join(sf.UnitDirs, ", "), os.ErrNotExist)
		}
		// A unit without LimitNOFILE gets the manager's DefaultLimitNOFILE,
		// whose hard limit has been 524288 since systemd 240.
		return Limit{Value: systemdDefaultNofile, Source: "systemd's default hard limit (the unit sets no LimitNOFILE)"}, nil
	}
	last := len(sources) - 1
	lim.Source = "LimitNOFILE in " + sources[last]
	if last > 0 {
		lim.Source += " (overriding " + strings.Join(sources[:last], ", ") + ")"
	}
	return lim, nil
}

// lastAssignment returns the value of the last "key=value" line for key
// (systemd unit syntax; later lines override earlier ones).
func lastAssignment(b []byte, key string) (string, bool) {
	var v string
	var ok bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		if k, val, found := strings.Cut(l, "="); found && strings.TrimSpace(k) == key {
			v, ok = strings.TrimSpace(val), true
		}
	}
	return v, ok
}

// systemdDefaultNofile is systemd's DefaultLimitNOFILE hard limit.
const systemdDefaultNofile = 524288

// parseNofile reads a LimitNOFILE value: "N", "soft:hard" or "infinity".
// Go raises its soft limit to the hard one at start, so the hard limit is
// what chatd runs with.
func parseNofile(v, source string) (Limit, error) {
	if _, hard, ok := strings.Cut(v, ":"); ok {
		v = hard
	}
	v = strings.TrimSpace(v)
	if v == "infinity" {
		return Limit{Infinity: true, Source: source}, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return Limit{}, fmt.Errorf("LimitNOFILE=%s: not a number", v)
	}
	return Limit{Value: n, Source: source}, nil
}

func (sf ServiceFiles) rcLimit() (Limit, error) {
	var lim Limit
	found := false
	var confs []string
	for _, p := range sf.RcConf {
		// rc.conf.d/<name> may be a folder: load_rc_config then reads
		// every file in it, in name order.
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			names, _ := filepath.Glob(filepath.Join(p, "*"))
			sort.Strings(names)
			confs = append(confs, names...)
			continue
		}
		confs = append(confs, p)
	}
	for _, p := range confs {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Limit{}, err
		}
		v, ok := rcAssignment(b, "chatd_nofile")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Limit{}, fmt.Errorf("%s: chatd_nofile=%q is not a number", p, v)
		}
		lim, found = Limit{Value: n, Source: "chatd_nofile in " + p}, true
	}
	if found {
		return lim, nil
	}
	script, name := sf.ShippedRc, "deploy/chatd.rc (shipped with chatd, not installed)"
	if b, err := os.ReadFile(sf.RcScript); err == nil {
		script, name = b, sf.RcScript
	}
	if script == nil {
		return Limit{}, fmt.Errorf("chatd_nofile: not set in %s and no rc script at %s: %w", strings.Join(sf.RcConf, ", "), sf.RcScript, os.ErrNotExist)
	}
	v, ok := RcDefault(script, "chatd_nofile")
	if !ok {
		return Limit{}, fmt.Errorf("%s has no default for chatd_nofile", name)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return Limit{}, fmt.Errorf("%s: chatd_nofile default %q is not a number", name, v)
	}
	return Limit{Value: n, Source: "the chatd_nofile default in " + name}, nil
}

// rcAssignment returns the last `name=value` of an rc.conf file, quotes
// removed (as sysrc writes them).
func rcAssignment(b []byte, name string) (string, bool) {
	var v string
	var ok bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if val, found := strings.CutPrefix(l, name+"="); found {
			if i := strings.Index(val, " #"); i >= 0 {
				val = val[:i]
			}
			v, ok = strings.Trim(strings.TrimSpace(val), `"'`), true
		}
	}
	return v, ok
}

// RcDefault returns the default an rc script gives a variable with
// `: ${name:="value"}`.
func RcDefault(script []byte, name string) (string, bool) {
	prefix := ": ${" + name + ":="
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if rest, found := strings.CutPrefix(l, prefix); found {
			if v, _, closed := strings.Cut(rest, "}"); closed {
				return strings.Trim(v, `"'`), true
			}
		}
	}
	return "", false
}
