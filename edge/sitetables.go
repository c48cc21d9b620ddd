package edge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetables/edgetables/jetstream"
)

// Error codes of the site tables' routes.
const (
	CodeSiteNotFound  = "site_not_found"
	CodeSiteNotSynced = "site_not_synced"
)

// startSiteTables starts a hub node's copy of its sites' table changelogs
// (nil for other nodes); it syncs until ctx ends, and stop waits for it.
func (n *Node) startSiteTables(ctx context.Context, js natsjs.JetStream) (t *jetstream.SiteTables, stop func(), err error) {
	if len(n.cfg.Edge.Sites) == 0 {
		return nil, func() {}, nil
	}
	t, err = jetstream.NewSiteTables(js, jetstream.SiteTablesConfig{App: n.cfg.App, Sites: n.cfg.Edge.Sites,
		Replicas: n.cfg.Replicas, Logger: n.log})
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.Run(sctx, n.cfg.Edge.SiteTablesInterval)
	}()
	return t, func() { cancel(); <-done }, nil
}

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

// siteTablesStatus adds the sites' tables to /v1/status.
func (n *Node) siteTablesStatus(out map[string]any) {
	if n.siteTables == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out["site_tables"] = n.siteTables.Status(ctx)
}

// siteTablesMetrics collects a hub node's metrics of its sites' tables.
type siteTablesMetrics struct {
	n                      *Node
	lag, records, inactive *prometheus.Desc
}

func newSiteTablesMetrics(n *Node) *siteTablesMetrics {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("edgetables_"+name, help, []string{"site"}, nil)
	}
	return &siteTablesMetrics{n: n,
		lag:      d("site_changelog_lag_records", "Hub: changelog records of each site's tables not yet at the hub, as the site last said."),
		records:  d("site_changelog_records", "Hub: records of each site's tables held at the hub."),
		inactive: d("site_changelog_last_active_seconds", "Hub: seconds since the hub last heard from a site's changelog streams (the longest of its partitions; -1: never)."),
	}
}

// Describe implements prometheus.Collector.
func (c *siteTablesMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.records
	ch <- c.inactive
}

// Collect implements prometheus.Collector: one request per site.
func (c *siteTablesMetrics) Collect(ch chan<- prometheus.Metric) {
	if c.n.siteTables == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range c.n.siteTables.Status(ctx) {
		active := -1.0
		if s.LastActive >= 0 {
			active = s.LastActive.Seconds()
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), s.Site)
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(s.Records), s.Site)
		ch <- prometheus.MustNewConstMetric(c.inactive, prometheus.GaugeValue, active, s.Site)
	}
}
