package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
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

// parseSettings fills fs from the config file, the environment and args.
func parseSettings(fs *flag.FlagSet, args []string, environ func(string) (string, bool)) error {
	path := configPath(args, environ)
	if path != "" {
		if err := loadConfigFile(fs, path); err != nil {
			return err
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
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return parseFlags(fs, args)
}

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
		return fmt.Errorf("%w\nRun \"chatd %s -h\" for the flags", err, fs.Name())
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

func loadConfigFile(fs *flag.FlagSet, path string) error {
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
	}
	return sc.Err()
}

func osEnviron(name string) (string, bool) { return os.LookupEnv(name) }
