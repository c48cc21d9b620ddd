package edge

import (
	"context"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetables/edgetables/jetstream"
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
