package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// The read of one key is the API's hot path: it is served before the mux
// (whose pattern matching costs more than the read) when the path is
// plainly /v1/tables/{table}/keys/{key}, and its answer is encoded by
// appending to a pooled buffer. Every other request, and every path the
// mux would clean, redirect or match differently, goes to the mux, so the
// answers stay byte for byte those of the mux's route (testdata/getkey.golden).

// keysPrefix starts the path of a key read.
const keysPrefix = "/v1/tables/"

// keyReads serves GET /v1/tables/{table}/keys/{key} itself, with the scope
// and answers of the mux's route, and passes every other request to next.
func (a *API) keyReads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		table, key, ok := keyReadPath(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if a.permit(w, r, ScopeRead) {
			a.readKey(w, r, table, key)
		}
	})
}

// keyReadPath returns the table and key of a GET whose path is
// /v1/tables/{table}/keys/{key} as the mux matches it: the escaped path
// clean (no empty, "." or ".." segment, so the mux does not redirect it),
// each segment unescaped as the mux unescapes it. Paths it does not read
// plainly (the fixed segments escaped, say) are not ok: the mux has them.
func keyReadPath(r *http.Request) (table, key string, ok bool) {
	if r.Method != http.MethodGet {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), keysPrefix)
	if !ok {
		return "", "", false
	}
	table, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	key, ok = strings.CutPrefix(rest, "keys/")
	if !ok || !plainSegment(table) || !plainSegment(key) {
		return "", "", false
	}
	return unescapeSegment(table), unescapeSegment(key), true
}

// plainSegment reports whether s is one path segment the mux neither
// cleans nor redirects.
func plainSegment(s string) bool {
	return s != "" && s != "." && s != ".." && strings.IndexByte(s, '/') < 0
}

// unescapeSegment unescapes a path segment as the mux does: kept as it is
// when it is not a valid escape.
func unescapeSegment(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// entryBuffers hold the encodings of key reads' answers.
var entryBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// maxPooledEntry is the largest buffer put back in entryBuffers: a large
// value's must not stay in the pool.
const maxPooledEntry = 64 << 10

// writeEntry answers 200 with the entry {"table", "key", "value",
// "partition"} of a key read, as writeJSON encodes it; a negative
// partition (a global table's key) is left out.
func writeEntry(w http.ResponseWriter, table, key string, value json.RawMessage, partition int) {
	bp := entryBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledEntry {
			entryBuffers.Put(bp)
		}
	}()
	b, ok := appendEntry((*bp)[:0], table, key, value, partition)
	*bp = b
	if !ok {
		e := entry{Table: table, Key: key, Value: value}
		if partition >= 0 {
			e.Partition = &partition
		}
		writeJSON(w, http.StatusOK, e)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// appendEntry appends the JSON of an entry as encoding/json's Encoder
// (SetEscapeHTML(false)) writes it, line break included. It is not ok when
// table or key need escaping or the value is empty or not JSON: the caller
// then uses the Encoder.
func appendEntry(b []byte, table, key string, value json.RawMessage, partition int) ([]byte, bool) {
	if table == "" || !plainJSON(table) || !plainJSON(key) || len(value) == 0 {
		return b, false
	}
	b = append(b, `{"table":"`...)
	b = append(b, table...)
	b = append(b, `","key":"`...)
	b = append(b, key...)
	b = append(b, `","value":`...)
	if plainNumber(value) {
		b = append(b, value...)
	} else {
		var err error
		if b, err = appendCompact(b, value); err != nil {
			return b, false
		}
	}
	if partition >= 0 {
		b = append(b, `,"partition":`...)
		b = strconv.AppendInt(b, int64(partition), 10)
	}
	return append(b, "}\n"...), true
}

// plainJSON reports whether s is written into a JSON string as it is:
// printable ASCII without quote or backslash.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plainNumber reports whether v is an integer in its compact form
// (optional minus, digits): what json.Compact leaves as it is.
func plainNumber(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 1 && v[0] == '0' {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendCompact appends v without insignificant space, as the Encoder
// writes a json.RawMessage.
func appendCompact(b []byte, v []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, v); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}
