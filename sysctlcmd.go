package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/chatd/chatd/internal/proc"
	"github.com/chatd/chatd/sysctl"
)

// The service files shipped with chatd: `sysctl check` reads the
// open-files limit from them when the host has none installed yet.
var (
	//go:embed deploy/chatd.service
	shippedUnit []byte
	//go:embed deploy/chatd.rc
	shippedRc []byte
)

const sysctlUsage = `Usage: chatd sysctl print|check|apply [flags]

  print   the kernel profile for a target: files to install, every value explained
  check   compare this host with the profile; exits 1 when something differs
  apply   install the profile and raise run-time values (root); --dry-run shows what it would do

The open-files limit is the chatd service's (systemd LimitNOFILE, or the rc
script's chatd_nofile on FreeBSD), not that of the shell running the command.
Flags of each command: chatd sysctl print -h
`

func sysctlCmd(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, sysctlUsage)
		return errors.New("sysctl: command missing")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Print(sysctlUsage)
		return nil
	}
	fs := flag.NewFlagSet("sysctl "+args[0], flag.ContinueOnError)
	osName := fs.String("os", runtime.GOOS, "target OS: linux or freebsd")
	conns := fs.Int("conns", sysctl.DefaultConns, "connections the host must hold")
	mem := fs.Uint64("mem", proc.HostMemory(), "bytes of RAM on the host (sizes TCP buffer memory)")
	role := fs.String("role", "server", "server (chatd) or client (a load generator)")
	dry := fs.Bool("dry-run", false, "apply: only say what would change")
	if err := parseFlags(fs, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	p, err := sysctl.For(*osName, sysctl.Target{Conns: *conns, Memory: *mem, Role: *role})
	if err != nil {
		return err
	}
	svc := sysctl.DefaultServiceFiles(shippedUnit, shippedRc)
	if st, err := os.Stat("/run/systemd/system"); err == nil && st.IsDir() { // sd_booted(3)
		svc.Systemctl = func() ([]byte, error) {
			return exec.Command("systemctl", "show", "-p", "LoadState", "-p", "LimitNOFILE", "chatd").Output()
		}
	}
	nofile := func() (sysctl.Limit, error) { return svc.ServiceLimit(p.OS) }
	switch args[0] {
	case "print":
		p.Print(os.Stdout)
		return nil
	case "check":
		if p.OS != runtime.GOOS {
			return fmt.Errorf("sysctl: check reads this host, which runs %s, not %s", runtime.GOOS, p.OS)
		}
		read := sysctl.LinuxReader("/proc/sys", nofile)
		if p.OS == "freebsd" {
			out, err := commandOutput("sysctl", "-a")
			if err != nil {
				return err
			}
			if read, err = sysctl.SysctlAReader(out, nofile); err != nil {
				return err
			}
		}
		fs := p.Check(read)
		sysctl.Report(os.Stdout, fs)
		if n := sysctl.Failed(fs); n > 0 {
			fmt.Printf("\n%d of %d settings differ from the profile for %d connections. Install it with: chatd sysctl apply --conns %d\n",
				n, len(fs), *conns, *conns)
			os.Exit(1)
		}
		fmt.Printf("\nthis host is ready for %d connections\n", *conns)
		return nil
	case "apply":
		if !*dry && p.OS != runtime.GOOS {
			return fmt.Errorf("sysctl: apply changes this host, which runs %s, not %s: use print, or --dry-run", runtime.GOOS, p.OS)
		}
		if !*dry && os.Geteuid() != 0 {
			return errors.New("sysctl: apply writes system files: run it as root, or with --dry-run")
		}
		return sysctl.ReportActions(os.Stdout, p.Apply(sysctl.ApplyOptions{DryRun: *dry, Nofile: nofile}))
	}
	fmt.Fprint(os.Stderr, sysctlUsage)
	return fmt.Errorf("sysctl: unknown command %q", args[0])
}
