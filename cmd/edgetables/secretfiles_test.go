package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLooseSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}, {0o666, true}, {0o602, true}} {
		path := filepath.Join(dir, "f"+tc.mode.String())
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		got := looseSecrets([]secretFile{{"--http-tokens", path}})
		if (len(got) == 1) != tc.warn || (tc.warn && !strings.Contains(got[0], "--http-tokens "+path) || len(got) > 1) {
			t.Errorf("mode %04o: %q, want a warning: %v", tc.mode, got, tc.warn)
		}
	}
	if got := looseSecrets([]secretFile{{"--nats-auth", filepath.Join(dir, "missing")}}); len(got) != 0 {
		t.Errorf("a missing file: %q, want nothing (the flag reports it)", got)
	}
}

// TestCheckWarnsOfLooseSecrets: check says so on stderr, still exit 0.
func TestCheckWarnsOfLooseSecrets(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("read "+strings.Repeat("t", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := check(t, nil, "--table="+specA, "--http-tokens="+tokens)
	if code != 0 || !strings.Contains(out, "configuration OK") || !strings.Contains(errOut, "--http-tokens "+tokens+" has mode 0644") {
		t.Errorf("exit %d, stdout %s, stderr %s; want OK and a warning", code, out, errOut)
	}
}
