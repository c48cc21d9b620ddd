package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// commit is set at build time with -ldflags "-X main.commit=..." (see
// deploy/release.sh).
var commit = ""

// versionLine is what `edgetables version` prints: the version, the
// commit, the platform and the Go release.
func versionLine() string {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, commit, bi)
}

// versionFrom makes the version line from the values -ldflags stamped
// (version, commit) and, for what they leave empty, the build's own
// information: the main module's version and the VCS revision and state
// that `go build` records in a git checkout. Without either it says so,
// rather than printing a bare "dev".
func versionFrom(version, commit string, bi *debug.BuildInfo) string {
	modified := false
	if bi != nil {
		if version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && commit == "":
				commit = s.Value
			case s.Key == "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if version == "" {
		version = "dev"
	}
	platform := fmt.Sprintf("%s/%s, %s", runtime.GOOS, runtime.GOARCH, runtime.Version())
	switch {
	case commit == "":
		return fmt.Sprintf("edgetables %s (no commit recorded: built outside a git checkout, with -buildvcs=false, or by go run; %s)", version, platform)
	case modified:
		return fmt.Sprintf("edgetables %s (commit %s with local changes, %s)", version, commit, platform)
	}
	return fmt.Sprintf("edgetables %s (commit %s, %s)", version, commit, platform)
}
