package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

// Error codes of the HTTP API's authentication.
const (
	// CodeUnauthorized: no bearer token, an unknown one, or (with client
	// certificates) no verified certificate. The answer is 401 with
	// WWW-Authenticate: Bearer.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the token is known but its scopes do not cover the
	// request. The answer is 403.
	CodeForbidden = "forbidden"
)

// Scope is a set of rights a bearer token grants on the HTTP API.
type Scope uint8

// The scopes of a token, as named in a tokens file. Write includes read,
// admin includes every other; metrics is /metrics alone, for a scraper.
const (
	// ScopeRead: GET /v1/tables and the keys of every table.
	ScopeRead Scope = 1 << iota
	// ScopeWrite: PUT and DELETE of global tables' keys (and ScopeRead).
	ScopeWrite
	// ScopeMetrics: GET /metrics.
	ScopeMetrics
	// ScopeAdmin: GET /v1/status (and every other scope).
	ScopeAdmin
)

// scopeNames are the names of scopes in a tokens file, and what each grants.
var scopeNames = map[string]Scope{
	"read":    ScopeRead,
	"write":   ScopeWrite | ScopeRead,
	"metrics": ScopeMetrics,
	"admin":   ScopeAdmin | ScopeWrite | ScopeRead | ScopeMetrics,
}

// String names the scopes of s, comma-separated ("none" for no scope).
func (s Scope) String() string {
	var names []string
	for i, n := range []string{"read", "write", "metrics", "admin"} {
		if s&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// ErrTokens marks a tokens file that cannot be used; the error names the
// file and line.
var ErrTokens = errors.New("bad HTTP tokens file")

// minTokenLen is the shortest token a tokens file may hold in clear: a
// shorter one could be guessed.
const minTokenLen = 16

// hashPrefix marks a token given by its SHA-256 in a tokens file.
const hashPrefix = "sha256:"

// tokenEntry is one line of a tokens file: the SHA-256 of the token and
// its scopes. Only the hash is kept in memory.
type tokenEntry struct {
	hash  [sha256.Size]byte
	scope Scope
}

// Tokens are the bearer tokens the HTTP API takes, read from a file, each
// with its scopes. The file holds one token a line:
//
//	SCOPE[,SCOPE...] TOKEN
//	SCOPE[,SCOPE...] sha256:HEX
//
// with the scopes read, write, metrics and admin; TOKEN is the token in
// clear (at least 16 characters), sha256:HEX the hex SHA-256 of the token,
// so that the file does not hold the secret. Blank lines and lines starting
// with # are skipped. A request's token is hashed and compared with every
// entry in constant time. Reload re-reads the file; a Tokens is safe for
// concurrent use.
type Tokens struct {
	path string

	mu      sync.RWMutex
	entries []tokenEntry
}

// LoadTokens reads the tokens file at path. An error wraps ErrTokens and
// names the line; it never holds a token.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the file: new tokens are taken and removed ones refused
// from the next request on. On error the tokens in use are kept.
func (t *Tokens) Reload() error {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTokens, err)
	}
	entries, err := parseTokens(b)
	if err != nil {
		return fmt.Errorf("%s: %w", t.path, err)
	}
	t.mu.Lock()
	t.entries = entries
	t.mu.Unlock()
	return nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}

// parseTokens parses the content of a tokens file (see Tokens). An error
// wraps ErrTokens and names the line, never the token. A file without any
// token is an error: it would refuse every request.
func parseTokens(b []byte) ([]tokenEntry, error) {
	var entries []tokenEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		fields := strings.Fields(s)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: line %d: want SCOPES TOKEN (2 fields), got %d fields", ErrTokens, line, len(fields))
		}
		var e tokenEntry
		for i, name := range strings.Split(fields[0], ",") {
			sc, ok := scopeNames[name]
			if !ok {
				// Not the name: a token misplaced among the scopes
				// ("admin,TOKEN x") would be in the log.
				return nil, fmt.Errorf("%w: line %d: scope %d of the first field is not one of read, write, metrics, admin", ErrTokens, line, i+1)
			}
			e.scope |= sc
		}
		tok := fields[1]
		if h, ok := strings.CutPrefix(tok, hashPrefix); ok {
			d, err := hex.DecodeString(h)
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("%w: line %d: sha256: want 64 hex digits", ErrTokens, line)
			}
			copy(e.hash[:], d)
		} else {
			if len(tok) < minTokenLen {
				return nil, fmt.Errorf("%w: line %d: token of %d characters: want at least %d", ErrTokens, line, len(tok), minTokenLen)
			}
			e.hash = sha256.Sum256([]byte(tok))
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokens, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no token", ErrTokens)
	}
	return entries, nil
}

// scopeOf returns the scopes of token, 0 for an unknown one. It compares
// the token's hash with every entry in constant time, whichever matches.
func (t *Tokens) scopeOf(token string) Scope {
	h := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	var s Scope
	for _, e := range t.entries {
		match := subtle.ConstantTimeCompare(h[:], e.hash[:])
		s |= e.scope & Scope(-match) // Scope(-1) is all ones
	}
	return s
}

// WarnOpen logs a warning when the API listens beyond loopback with
// neither tokens nor client certificates (anyone who reaches the port reads
// every table and writes the global ones), or with tokens but without TLS
// (they cross the network in clear).
func WarnOpen(log *slog.Logger, addr net.Addr, authenticated, encrypted bool) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	switch {
	case !authenticated:
		log.Warn("the HTTP API listens beyond loopback without authentication: anyone who reaches it reads every table and writes global tables; give --http-tokens (and --http-tls-cert/--http-tls-key)", "http", addr.String())
	case !encrypted:
		log.Warn("the HTTP API listens beyond loopback without TLS: its bearer tokens cross the network in clear; give --http-tls-cert/--http-tls-key", "http", addr.String())
	}
}

type scopeKey struct{}

// open reports whether path answers without authentication.
func open(path string) bool { return path == "/healthz" || path == "/readyz" }

// authenticate wraps the API's routes: with tokens, every request but
// /healthz and /readyz needs Authorization: Bearer TOKEN of a known token
// (else 401 unauthorized); with client certificates, a verified one (the
// TLS handshake asks for it but lets health checks through without).
// The token's scopes go to the routes' need.
func (a *API) authenticate(next http.Handler) http.Handler {
	if a.tokens == nil && !a.clientCerts {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.openPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if a.clientCerts && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			a.log.Debug("HTTP request refused: no verified client certificate", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "a client certificate is required")
			return
		}
		scope := ScopeRead | ScopeWrite | ScopeMetrics | ScopeAdmin
		if a.tokens != nil {
			tok, ok := bearer(r)
			if ok {
				scope = a.tokens.scopeOf(tok)
			}
			if !ok || scope == 0 {
				a.log.Debug("HTTP request refused: no known bearer token", "path", r.URL.Path, "remote", r.RemoteAddr, "token_given", ok)
				w.Header().Set("WWW-Authenticate", `Bearer realm="edgetables"`)
				writeError(w, http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required (Authorization: Bearer TOKEN)")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, scope)))
	})
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// need answers 403 forbidden unless the request's token has scope; without
// authentication every request has every scope.
func (a *API) need(scope Scope, h http.HandlerFunc) http.Handler {
	if a.tokens == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.permit(w, r, scope) {
			h(w, r)
		}
	})
}

// permit reports whether the request's token has scope, else answers 403
// forbidden; without tokens every request has every scope.
func (a *API) permit(w http.ResponseWriter, r *http.Request, scope Scope) bool {
	if a.tokens == nil {
		return true
	}
	got, _ := r.Context().Value(scopeKey{}).(Scope)
	if got&scope == 0 {
		a.log.Debug("HTTP request refused: scope too small", "path", r.URL.Path, "remote", r.RemoteAddr, "has", got.String(), "needs", scope.String())
		writeError(w, http.StatusForbidden, CodeForbidden, "the token's scopes ("+got.String()+") do not include "+scope.String())
		return false
	}
	return true
}
