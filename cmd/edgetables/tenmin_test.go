package main

import (
	"bytes"
	"context"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestBadTableNameBeforeStart: a table name the manager refuses exits 2
// naming --table, before anything starts (no NATS server log, no data
// directory written).
func TestBadTableNameBeforeStart(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"run", "--data-dir", dir, "--nats-listen=127.0.0.1:0", "--http-listen=off",
		"--table=name=Readings,source=a.*,key=subject:2,agg=count"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--table") || !strings.Contains(stderr.String(), "lower-case") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "nats-server") {
		t.Errorf("the NATS server started before the name was checked:\n%s", stderr.String())
	}
}

// TestStatusBase: --http of status takes a URL or host:port, with or
// without the /v1/status path.
func TestStatusBase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/v1/status", "http://127.0.0.1:8080"},
		{"http://127.0.0.1:8080/v1/status/", "http://127.0.0.1:8080"},
		{"127.0.0.1:8080/v1/status", "http://127.0.0.1:8080"},
		{"https://edge.example:8443/site1/v1/status?x=1", "https://edge.example:8443/site1"},
	} {
		got, err := statusBase(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("statusBase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"ftp://host", "http://", "http://%zz"} {
		if got, err := statusBase(bad); err == nil {
			t.Errorf("statusBase(%q) = %q, want an error", bad, got)
		}
	}
}

// TestVersionFrom: the version line uses what -ldflags stamped, else the
// build's module version and VCS revision, and never prints a bare "dev".
func TestVersionFrom(t *testing.T) {
	vcs := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261205023808-78ccc002c74e"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "78ccc002c74e5a245b15f20110ea4edb78bd7ff5"}, {Key: "vcs.modified", Value: "false"}}}
	dirty := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	bare := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name, version, commit string
		bi                    *debug.BuildInfo
		want                  string
	}{
		{"release", "v1.2.3", "deadbeef", vcs, "edgetables v1.2.3 (commit deadbeef, "},
		{"go build in git", "", "", vcs, "edgetables v0.0.0-20261205023808-78ccc002c74e (commit 78ccc002c74e5a245b15f20110ea4edb78bd7ff5, "},
		{"local changes", "", "", dirty, "edgetables dev (commit abc123 with local changes, "},
		{"no vcs", "", "", bare, "edgetables dev (no commit recorded"},
		{"no build info", "", "", nil, "edgetables dev (no commit recorded"},
	} {
		got := versionFrom(tc.version, tc.commit, tc.bi)
		if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, runtime.Version()) {
			t.Errorf("%s: %q, want prefix %q and the Go release", tc.name, got, tc.want)
		}
	}
}

// TestVersionOfBuiltBinary: the real binary, built as the README says,
// prints its platform and Go release, and the commit `go version -m`
// finds in it when the build recorded one.
func TestVersionOfBuiltBinary(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if line == "edgetables dev" || !strings.Contains(line, runtime.Version()) {
		t.Fatalf("version printed %q", line)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(info), "\n") {
		if rev, ok := strings.CutPrefix(strings.TrimSpace(l), "build\tvcs.revision="); ok && !strings.Contains(line, rev) {
			t.Errorf("version %q does not name the recorded commit %s", line, rev)
		}
	}
	t.Logf("%s", line)
}
