package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestWriteEntryAsEncoder: writeEntry answers the same status, headers and
// bytes as writeJSON of the entry, for keys and values that need escaping,
// compacting or the Encoder's fallback, and the appended form is taken for
// the plain ones.
func TestWriteEntryAsEncoder(t *testing.T) {
	keys := []string{"a", "sensor-1", "k~-_!$'()*+,;=:@ /%", "q\"x", `a\b`, "<b>&", "café", "\u2028x\u2029", "\x00\x01\b\f\n\r\t\x7f", "\xff\xfe", ""}
	values := []string{"0", "42", "-7", "-0", "9223372036854775807", "1.5", "1e3", "01", "-", `"s"`, `"<&>\u2028"`, "null", "true",
		`{"a": 1, "h": "<&>"}`, "[1, 2 ,3]", " 5 ", "{", "", `{"a":"` + strings.Repeat("x", 300) + `"}`}
	plain := 0
	for _, table := range []string{"counts", "t\"able"} {
		for _, key := range keys {
			for _, value := range values {
				for _, p := range []int{-1, 0, 17} {
					var v json.RawMessage
					if value != "" {
						v = json.RawMessage(value)
					}
					want := httptest.NewRecorder()
					e := entry{Table: table, Key: key, Value: v}
					if p >= 0 {
						e.Partition = &p
					}
					writeJSON(want, http.StatusOK, e)
					got := httptest.NewRecorder()
					writeEntry(got, table, key, v, p)
					if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
						t.Fatalf("table %q key %q value %q partition %d:\n got %d %v %q\nwant %d %v %q", table, key, value, p,
							got.Code, got.Header(), got.Body.Bytes(), want.Code, want.Header(), want.Body.Bytes())
					}
					if _, ok := appendEntry(nil, table, key, v, p); ok {
						plain++
					}
				}
			}
		}
	}
	if plain == 0 {
		t.Fatal("no entry took the appended form")
	}
}

// TestKeyReadPathAsMux: keyReadPath takes a request only when the mux
// routes it, unchanged, to GET /v1/tables/{table}/keys/{key}, and then
// gives the mux's table and key.
func TestKeyReadPathAsMux(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tables/{table}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Table", r.PathValue("table"))
		w.Header().Set("X-Key", r.PathValue("key"))
	})
	mux.HandleFunc("GET /v1/tables/{table}/keys", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("PUT /v1/tables/{table}/keys/{key}", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /console/", func(http.ResponseWriter, *http.Request) {})
	taken := 0
	for _, method := range []string{"GET", "HEAD", "PUT", "POST"} {
		for _, target := range []string{
			"/v1/tables/counts/keys/a", "/v1/tables/counts/keys/a?window=all", "/v1/tables/c%6Funts/keys/a%2Fb",
			"/v1/tables/counts/keys/caf%C3%A9", "/v1/tables/counts/keys/%2E", "/v1/tables/counts/keys/%2E%2E",
			"/v1/%74ables/counts/keys/a", "/v1/tables/counts/%6Beys/a", "/v1/tables/counts/keys/", "/v1/tables/counts/keys/a/",
			"/v1/tables/counts/keys/.", "/v1/tables/counts/keys/..", "/v1/tables/./keys/a", "/v1/tables/../keys/a", "/v1/tables//keys/a",
			"/v1/tables/counts/keys//a", "/v1/tables/counts/keys/a/b", "/v1/tables/counts/keys", "/v1/tables/counts/key/a",
			"/v1/tables/counts", "/v1/tables/", "/v1//tables/counts/keys/a", "/v2/tables/counts/keys/a", "//v1/tables/counts/keys/a",
			"/v1/tables/counts/keys/a%20b", "/v1/tables/a:b@c/keys/~!$&'()*+,;=",
		} {
			r := httptest.NewRequest(method, target, nil)
			table, key, ok := keyReadPath(r)
			if !ok {
				continue
			}
			taken++
			w := httptest.NewRecorder()
			_, pattern := mux.Handler(r)
			mux.ServeHTTP(w, r)
			if pattern != "GET /v1/tables/{table}/keys/{key}" || w.Code != http.StatusOK {
				t.Errorf("%s %s: keyReadPath takes it, the mux routes it to %q (%d)", method, target, pattern, w.Code)
				continue
			}
			if mt, mk := w.Header().Get("X-Table"), w.Header().Get("X-Key"); table != mt || key != mk {
				t.Errorf("%s %s: keyReadPath gives %q %q, the mux %q %q", method, target, table, key, mt, mk)
			}
		}
	}
	if taken < 5 {
		t.Fatalf("keyReadPath took only %d requests", taken)
	}
}
