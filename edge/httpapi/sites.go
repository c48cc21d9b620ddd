package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/edgetables/edgetables/jetstream"
)

// Error codes of the site tables' routes.
const (
	CodeSiteNotFound  = "site_not_found"
	CodeSiteNotSynced = "site_not_synced"
)

// siteReadTimeout bounds a read of a site's table at the hub.
const siteReadTimeout = 3 * time.Second

// siteEntry is a site table's record in the HTTP API.
type siteEntry struct {
	Site  string          `json:"site"`
	Table string          `json:"table"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
	// ValueBase64 holds a value that is not JSON.
	ValueBase64 string `json:"value_base64,omitempty"`
	Partition   int    `json:"partition"`
}

// getSiteKey serves GET /v1/sites/{site}/tables/{table}/keys/{key}: the
// latest value the hub has taken of a site's table key (read-only). The key
// is the text of the key's bytes, as the CLI's tables have string keys.
func (a *API) getSiteKey(w http.ResponseWriter, r *http.Request) {
	if a.sites == nil {
		writeError(w, http.StatusNotFound, CodeSiteNotFound, "this node is not a hub node (no --hub-site)")
		return
	}
	site, table, key := r.PathValue("site"), r.PathValue("table"), r.PathValue("key")
	// The hub's JetStream may be unreachable (the node's NATS connection
	// reconnecting): answer 503 rather than hold the client.
	ctx, cancel := context.WithTimeout(r.Context(), siteReadTimeout)
	defer cancel()
	rec, err := a.sites.Get(ctx, site, table, []byte(key))
	switch {
	case err != nil && ctx.Err() != nil && r.Context().Err() == nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, CodeNotReady, "the hub's JetStream did not answer in "+siteReadTimeout.String()+": "+err.Error())
	case errors.Is(err, jetstream.ErrUnknownSite):
		writeError(w, http.StatusNotFound, CodeSiteNotFound, err.Error())
	case errors.Is(err, jetstream.ErrNoRecord):
		writeError(w, http.StatusNotFound, CodeKeyNotFound, err.Error())
	case errors.Is(err, jetstream.ErrSiteNotSynced):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeSiteNotSynced, err.Error())
	case errors.Is(err, jetstream.ErrBadName) || errors.Is(err, jetstream.ErrKeyTooLong):
		writeError(w, http.StatusBadRequest, CodeBadKey, err.Error())
	case err != nil:
		a.fail(w, r, err)
	default:
		e := siteEntry{Site: site, Table: table, Key: key, Partition: rec.Partition}
		if json.Valid(rec.Value) {
			e.Value = rec.Value
		} else {
			e.ValueBase64 = base64.StdEncoding.EncodeToString(rec.Value)
		}
		writeJSON(w, http.StatusOK, e)
	}
}
