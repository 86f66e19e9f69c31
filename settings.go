package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chatd/chatd/internal/server"
)

// Settings come from three places, the later winning: an optional config
// file (--config, lines of "name = value" using the flag names, # starts a
// comment), environment variables (CHATD_ plus the flag name in upper case
// with - as _, e.g. CHATD_MAX_OUTBOUND), and the command line. A value
// that does not parse stops start-up with an error naming it and where it
// came from.

// envName is the environment twin of a flag.
func envName(flagName string) string {
	return "CHATD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// origins says where each setting's value came from ("the command line",
// "environment CHATD_WINDOW", "config file chatd.conf:3"), by flag name;
// a setting not in it has its default. A range error found after parsing
// names the place, so an operator knows which of three to fix.
type origins map[string]string

func (o origins) of(name string) string {
	if where, ok := o[name]; ok {
		return where
	}
	return "the default"
}

// parseSettings fills fs from the config file, the environment and args.
func parseSettings(fs *flag.FlagSet, args []string, environ func(string) (string, bool)) (origins, error) {
	from := origins{}
	path := configPath(args, environ)
	if path != "" {
		if err := loadConfigFile(fs, path, from); err != nil {
			return nil, err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if v, ok := environ(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %v", envName(f.Name), v, err))
			}
			from[f.Name] = "environment " + envName(f.Name)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	// The flags the command line set are the arguments before the first
	// that is not a flag (fs.Args), each -name, -name=value or -name value.
	for _, a := range args[:len(args)-len(fs.Args())] {
		if !strings.HasPrefix(a, "-") {
			continue // the value of the flag before it
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if fs.Lookup(name) != nil {
			from[name] = "the command line"
		}
	}
	return from, nil
}

// usageError is a command line that does not parse: main exits 2 for it,
// as flag.ExitOnError does, and 1 for a command that ran and failed.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// parseFlags parses args into fs. The flag package prints a bad flag's
// error and then the whole usage, and main prints the error again; here
// the usage is printed only for -h, and a bad flag's error comes back
// with one line saying where the flags are listed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		if usage != nil {
			usage()
		} else {
			fs.PrintDefaults()
		}
		return err
	}
	if err != nil {
		return usageError{fmt.Errorf("%w\nRun \"chatd %s -h\" for the flags", err, fs.Name())}
	}
	return nil
}

// configPath finds --config before the flags are parsed, so that the
// command line can still override what the file says.
func configPath(args []string, environ func(string) (string, bool)) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "config="); ok {
			return v
		}
		if a == "config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	v, _ := environ("CHATD_CONFIG")
	return v
}

func loadConfigFile(fs *flag.FlagSet, path string, from origins) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		if !ok {
			return fmt.Errorf("config file %s:%d: want \"name = value\", got %q", path, n, line)
		}
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("config file %s:%d: unknown setting %q", path, n, name)
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("config file %s:%d: %s = %q: %v", path, n, name, value, err)
		}
		from[name] = fmt.Sprintf("config file %s:%d", path, n)
	}
	return sc.Err()
}

func osEnviron(name string) (string, bool) { return os.LookupEnv(name) }

// explainSettings rewrites the settings server.Config.Validate refused so
// that each names its flag and where its value came from:
//
//	-memory-watermark 1.5 (from environment CHATD_MEMORY_WATERMARK): outside (0, 1]
//
// Any other error comes back as it was.
func explainSettings(err error, from origins) error {
	var bad []*server.SettingError
	collectSettingErrors(err, &bad)
	if len(bad) == 0 {
		return err
	}
	lines := make([]string, 0, len(bad)+1)
	lines = append(lines, "settings that cannot work:")
	for _, e := range bad {
		lines = append(lines, fmt.Sprintf("  -%s %v (from %s): %s", e.Setting, e.Value, from.of(e.Setting), e.Reason))
	}
	return usageError{errors.New(strings.Join(lines, "\n"))}
}

func collectSettingErrors(err error, into *[]*server.SettingError) {
	if se, ok := err.(*server.SettingError); ok {
		*into = append(*into, se)
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			collectSettingErrors(e, into)
		}
	case interface{ Unwrap() error }:
		collectSettingErrors(u.Unwrap(), into)
	}
}
