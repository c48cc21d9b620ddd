package main

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestWarnUnknownEnv: an EDGETABLES_ variable no flag reads is named in a
// warning, with the nearest flag's variable when one is close; the ones
// flags or the binary read are not.
func TestWarnUnknownEnv(t *testing.T) {
	var c cli
	parser, err := newParser(&c, io.Discard, io.Discard, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want string // "" for no warning
	}{
		{"EDGETABLES_PARTITIONS=8", ""},
		{"EDGETABLES_DATA_DIR=/x", ""},
		{tokenEnv + "=t", ""},
		{"PATH=/bin", ""},
		{"EDGETABLES_CHAOS_ONLY=hogs/at-least-once", ""},
		{"EDGETABLES_PARTITONS=8", "name=EDGETABLES_PARTITONS did_you_mean=EDGETABLES_PARTITIONS"},
		{"EDGETABLES_DATADIR=/x", "name=EDGETABLES_DATADIR did_you_mean=EDGETABLES_DATA_DIR"},
		{"EDGETABLES_WHATEVER=1", "name=EDGETABLES_WHATEVER\n"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			var out bytes.Buffer
			warnUnknownEnv(parser.Model, []string{tc.env}, slog.New(slog.NewTextHandler(&out, nil)))
			switch {
			case tc.want == "" && out.Len() > 0:
				t.Errorf("warned: %s", out.String())
			case tc.want != "" && !strings.Contains(out.String(), tc.want):
				t.Errorf("log %q; want it to contain %q", out.String(), tc.want)
			}
		})
	}
}

// TestTestSuiteEnvListed: every EDGETABLES_ variable a test of the module
// reads is in testSuiteEnv or read by a flag, so that the binaries the
// tests start do not warn about it (a test comparing their output would
// fail in CI, which sets some).
func TestTestSuiteEnvListed(t *testing.T) {
	var c cli
	parser, err := newParser(&c, io.Discard, io.Discard, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	known := knownEnv(parser.Model)
	read := regexp.MustCompile(`(?:Getenv|LookupEnv)\("(EDGETABLES_[A-Z0-9_]+)"\)|\{"(EDGETABLES_[A-Z0-9_]+)", &`)
	found := 0
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range read.FindAllStringSubmatch(string(src), -1) {
			name := m[1] + m[2]
			found++
			if !slices.Contains(known, name) {
				t.Errorf("%s reads %s, which is not in testSuiteEnv", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < len(testSuiteEnv) {
		t.Errorf("found %d reads of test variables; want at least %d (the pattern no longer matches how tests read them?)", found, len(testSuiteEnv))
	}
}
