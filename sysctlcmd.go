package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/chatd/chatd/internal/conn"
	"github.com/chatd/chatd/internal/proc"
	"github.com/chatd/chatd/sysctl"
)

const sysctlUsage = `Usage: chatd sysctl print|check|apply [flags]

  print   the kernel profile for a target: files to install, every value explained
  check   compare this host with the profile; exits 1 when something falls short
  apply   install the profile and raise run-time values (root); --dry-run shows what it would do
`

func sysctlCmd(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, sysctlUsage)
		return errors.New("sysctl: command missing")
	}
	fs := flag.NewFlagSet("sysctl "+args[0], flag.ContinueOnError)
	osName := fs.String("os", runtime.GOOS, "target OS: linux or freebsd")
	conns := fs.Int("conns", 1_000_000, "connections the host must hold")
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
	soft, _, _ := conn.FileLimit()
	switch args[0] {
	case "print":
		p.Print(os.Stdout)
		return nil
	case "check":
		if p.OS != runtime.GOOS {
			return fmt.Errorf("sysctl: check reads this host, which runs %s, not %s", runtime.GOOS, p.OS)
		}
		var read sysctl.Reader = sysctl.LinuxReader("/proc/sys", soft)
		if p.OS == "freebsd" {
			out, err := commandOutput("sysctl", "-a")
			if err != nil {
				return err
			}
			if read, err = sysctl.SysctlAReader(out, soft); err != nil {
				return err
			}
		}
		fs := p.Check(read)
		sysctl.Report(os.Stdout, fs)
		if n := sysctl.Failed(fs); n > 0 {
			fmt.Printf("\n%d of %d settings fall short of %d connections. Install them with: chatd sysctl apply --conns %d\n",
				n, len(fs), *conns, *conns)
			os.Exit(1)
		}
		fmt.Printf("\nthis host is ready for %d connections\n", *conns)
		return nil
	case "apply":
		if !*dry && os.Geteuid() != 0 {
			return errors.New("sysctl: apply writes system files: run it as root, or with --dry-run")
		}
		return sysctl.ReportActions(os.Stdout, p.Apply(sysctl.ApplyOptions{DryRun: *dry, Nofile: soft}))
	}
	fmt.Fprint(os.Stderr, sysctlUsage)
	return fmt.Errorf("sysctl: unknown command %q", args[0])
}
