// Package version says which build of chatd is running: the module
// version and VCS commit Go stamps into the binary, and the Go release
// it was built with. `chatd version` prints it and the server exports
// it as the chatd_build_info metric.
package version

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info is one build's identity. Fields Go could not stamp (a build
// outside a VCS checkout, a test binary) read "unknown".
type Info struct {
	Version  string // module version: a tag, a pseudo-version or "(devel)"
	Commit   string // VCS revision, with "-dirty" if the tree had changes
	Time     string // the commit's time (RFC 3339), "" if unknown
	Go       string // runtime.Version()
	Modified bool
}

var get = sync.OnceValue(func() Info {
	in := Info{Version: "unknown", Commit: "unknown", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	if v := bi.Main.Version; v != "" {
		in.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	if in.Modified && in.Commit != "unknown" {
		in.Commit += "-dirty"
	}
	return in
})

// Get returns the running binary's Info.
func Get() Info { return get() }

// String is the one line `chatd version` prints.
func (in Info) String() string {
	s := "chatd " + in.Version + " commit " + in.Commit
	if in.Time != "" {
		s += " (" + in.Time + ")"
	}
	return s + " " + in.Go
}
