package main

import (
	"fmt"
	"runtime"
)

// commit is set at build time with -ldflags "-X main.commit=..." (see
// deploy/release.sh).
var commit = ""

// versionLine is what `edgetables version` prints: the version, and the
// commit, platform and Go release when the build stamped a commit.
func versionLine() string {
	if commit == "" {
		return "edgetables " + versionString()
	}
	return fmt.Sprintf("edgetables %s (commit %s, %s/%s, %s)", versionString(), commit, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
