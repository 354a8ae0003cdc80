package main

import (
	"fmt"
	"runtime/debug"
)

// Build stamps. `go build` records the module version and the VCS revision
// in the binary (runtime/debug.ReadBuildInfo) when it builds from a git
// checkout with -buildvcs; it cannot in a git worktree or from a source
// tarball, so the Makefile also passes them with -ldflags "-X main.NAME=..."
// and these override what Go recorded.
var (
	version          = "" // e.g. "v1.2.0"; empty: the module version Go recorded
	revision         = "" // commit hash
	revisionTime     = "" // commit time, RFC 3339
	revisionModified = "" // "true" when built from a checkout with changes
)

// buildInfo says which build runs: `xswitch version`, `ctl show` and the
// xswitch_build_info metric all read it.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
}

// readBuildInfo merges the -ldflags stamps over what Go recorded.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: "dev", Revision: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = bi.GoVersion
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		b.Version = version
	}
	if revision != "" {
		b.Revision = revision
	}
	if revisionTime != "" {
		b.Time = revisionTime
	}
	if revisionModified != "" {
		b.Modified = revisionModified == "true"
	}
	return b
}

// String is the one-line form `xswitch version` prints.
func (b buildInfo) String() string {
	s := fmt.Sprintf("xswitch %s (revision %s", b.Version, b.Revision)
	if b.Modified {
		s += ", modified"
	}
	if b.Time != "" {
		s += ", " + b.Time
	}
	return s + ", " + b.GoVersion + ")"
}
