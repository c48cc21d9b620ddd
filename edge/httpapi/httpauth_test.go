package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The tokens of the tests: each at least 16 characters.
const (
	readToken    = "read-token-0123456789"
	writeToken   = "write-token-0123456789"
	adminToken   = "admin-token-0123456789"
	metricsToken = "metrics-token-0123456789"
)

func TestParseTokens(t *testing.T) {
	h := sha256.Sum256([]byte(readToken))
	for _, c := range []struct {
		name, in string
		want     []Scope // nil: an error
	}{
		{"one", "read " + readToken, []Scope{ScopeRead}},
		{"scopes", "read,metrics " + readToken + "\n# c\n\nwrite " + writeToken, []Scope{ScopeRead | ScopeMetrics, ScopeRead | ScopeWrite}},
		{"admin has all", "admin " + adminToken, []Scope{ScopeRead | ScopeWrite | ScopeMetrics | ScopeAdmin}},
		{"hash", "read sha256:" + hex.EncodeToString(h[:]), []Scope{ScopeRead}},
		{"empty", "# none\n\n", nil},
		{"short", "read short", nil},
		{"unknown scope", "root " + readToken, nil},
		{"no scope", readToken, nil},
		{"three fields", "read " + readToken + " extra", nil},
		{"token among the scopes", "admin," + readToken + " x", nil},
		{"bad hash", "read sha256:abcd", nil},
		{"hash not hex", "read sha256:" + strings.Repeat("z", 64), nil},
	} {
		got, err := parseTokens([]byte(c.in))
		if c.want == nil {
			if !errors.Is(err, ErrTokens) {
				t.Errorf("%s: %v, want ErrTokens", c.name, err)
			}
			if err != nil && strings.Contains(err.Error(), readToken) {
				t.Errorf("%s: the error %q holds the token", c.name, err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%s: %v, %v", c.name, got, err)
			continue
		}
		for i, e := range got {
			if e.scope != c.want[i] {
				t.Errorf("%s: entry %d has %s, want %s", c.name, i, e.scope, c.want[i])
			}
		}
	}
}
