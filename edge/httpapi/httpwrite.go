package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// Error codes of the HTTP API's writes.
const (
	// CodeNotWritable: the table is written by its agent only; PUT and
	// DELETE take global tables.
	CodeNotWritable = "not_writable"
	// CodeConflict: If-Match named another revision than the key's.
	CodeConflict = "conflict"
	// CodeTooLarge: the value is larger than a global table's record can
	// carry (the NATS max_payload less room for headers).
	CodeTooLarge = "too_large"
)

// maxValueBytes caps the body of a PUT.
const maxValueBytes = 1 << 20

// writeTimeout bounds one write: the global log's leader may be electing.
const writeTimeout = 10 * time.Second

// revisionJSON is the answer to a write.
type revisionJSON struct {
	Table    string          `json:"table"`
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value,omitempty"`
	Revision uint64          `json:"revision"`
}

// writable returns the table of the request if any node may write it, or
// answers the request with an error.
func (a *API) writable(w http.ResponseWriter, r *http.Request) (manager.WritableCollection, []byte, *uint64, bool) {
	name := r.PathValue("table")
	t, err := a.m.Table(name)
	if err != nil {
		a.fail(w, r, err)
		return nil, nil, nil, false
	}
	wt, ok := t.(manager.WritableCollection)
	if !ok {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, CodeNotWritable, "table "+name+" is written by its agent; only global tables take writes over HTTP")
		return nil, nil, nil, false
	}
	key := r.PathValue("key")
	if !utf8.ValidString(key) {
		writeError(w, http.StatusBadRequest, CodeBadKey, "key: not valid UTF-8 (it could be neither shown nor asked for as it is)")
		return nil, nil, nil, false
	}
	kb, err := t.ParseKey(key)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadKey, err.Error())
		return nil, nil, nil, false
	}
	var expect *uint64
	if s := r.Header.Get("If-Match"); s != "" {
		rev, err := strconv.ParseUint(strings.Trim(s, `"`), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "If-Match: want a revision number (0: the key must not exist), got "+s)
			return nil, nil, nil, false
		}
		expect = &rev
	}
	return wt, kb, expect, true
}

// putKey writes a key of a global table: PUT /v1/tables/{table}/keys/{key}
// with the value as a JSON body; If-Match: REVISION makes it conditional.
func (a *API) putKey(w http.ResponseWriter, r *http.Request) {
	t, kb, expect, ok := a.writable(w, r)
	if !ok {
		return
	}
	limit := a.maxValueSize()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("value: larger than %d bytes, the most a global table's value may have", limit))
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "value: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	rev, err := t.PutJSON(ctx, kb, body, expect)
	if err != nil {
		a.failWrite(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(rev, 10)))
	writeJSON(w, http.StatusOK, revisionJSON{Table: t.Name(), Key: r.PathValue("key"), Value: body, Revision: rev})
}

// deleteKey removes a key of a global table: DELETE
// /v1/tables/{table}/keys/{key}; If-Match: REVISION makes it conditional.
func (a *API) deleteKey(w http.ResponseWriter, r *http.Request) {
	t, kb, expect, ok := a.writable(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	rev, err := t.DeleteKey(ctx, kb, expect)
	if err != nil {
		a.failWrite(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, revisionJSON{Table: t.Name(), Key: r.PathValue("key"), Revision: rev})
}

// maxValueSize returns the largest value a PUT takes.
func (a *API) maxValueSize() int {
	if a.maxValue > 0 && a.maxValue < maxValueBytes {
		return a.maxValue
	}
	return maxValueBytes
}

// conflictMessage explains a 412: the key's revision is not If-Match's.
func conflictMessage(r *http.Request) string {
	return "table " + r.PathValue("table") + " key " + strconv.Quote(r.PathValue("key")) +
		": If-Match " + r.Header.Get("If-Match") + " is not the key's revision (it changed meanwhile, or 0 was given for a key that exists); read the key for its ETag and retry"
}

// failWrite maps a write's error to a status code.
func (a *API) failWrite(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, manager.ErrBadValue):
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, port.ErrConflict):
		// Not err's text: it ends in the NATS API error of the check.
		writeError(w, http.StatusPreconditionFailed, CodeConflict, conflictMessage(r))
	case errors.Is(err, nats.ErrMaxPayload):
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("value: too large for a global table's record (at most %d bytes)", a.maxValueSize()))
	case errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, err.Error())
	default:
		a.fail(w, r, err)
	}
}
