package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// DefaultHubDomain is the hub's JetStream domain a site assumes.
const DefaultHubDomain = "hub"

// EdgeConfig makes a node an edge site (a leaf node of a hub, in a
// JetStream domain of its own) or a hub node (whose source stream sources
// every site's). See the README's "Edge sites".
type EdgeConfig struct {
	// Leaf makes the embedded server a leaf node of a hub. Its Domain
	// defaults to the node's Name when Remotes are set.
	Leaf jetstream.LeafConfig
	// HubDomain is the hub's JetStream domain (default "hub"). A site
	// (Leaf.Remotes set) asks it what the hub has taken of the site's
	// source stream, and the trim keeps every event the hub has not taken
	// (within SourceMaxBytes: nearly full is an alert).
	HubDomain string
	// NoHubHold lets a site trim its source stream without waiting for the
	// hub (for a site whose hub does not source it).
	NoHubHold bool
	// Sites make this node a hub node: its source stream sources each
	// site's source stream (same App) across domains, subjects prefixed
	// with the site name, and its tables run over all of them.
	Sites []jetstream.SiteSource
	// SiteTablesInterval is how often a hub node looks for its sites'
	// changelog streams to copy (default 5s; see SiteTables).
	SiteTablesInterval time.Duration
}

// site reports whether the node is an edge site that holds events for
// its hub.
func (e *EdgeConfig) site() bool { return len(e.Leaf.Remotes) > 0 && !e.NoHubHold }

// setDefaults fills the edge defaults of c and checks them.
func (e *EdgeConfig) setDefaults(c *Config) error {
	if len(e.Leaf.Remotes) > 0 && e.Leaf.Domain == "" {
		e.Leaf.Domain = c.Name
	}
	if e.HubDomain == "" {
		e.HubDomain = DefaultHubDomain
	}
	if len(c.NATSURLs) > 0 && (len(e.Leaf.Remotes) > 0 || e.Leaf.Domain != "") {
		return errors.New("node: a leaf remote or a JetStream domain needs the embedded server, not NATSURLs")
	}
	if err := e.Leaf.Validate(); err != nil {
		return err
	}
	if e.site() && e.Leaf.Domain == e.HubDomain {
		return fmt.Errorf("node: the site's JetStream domain %q is the hub's", e.HubDomain)
	}
	return nil
}

// siteHold starts the hub hold of a site (nil for other nodes); it runs
// until ctx ends.
func (n *Node) siteHold(ctx context.Context, nc *nats.Conn) (*jetstream.HubHold, error) {
	e := n.cfg.Edge
	if !e.site() || n.cfg.KeepSource {
		return nil, nil
	}
	h, err := jetstream.NewHubHold(nc, jetstream.HubHoldConfig{App: n.cfg.App, SiteDomain: e.Leaf.Domain,
		HubDomain: e.HubDomain, Logger: n.log})
	if err != nil {
		return nil, err
	}
	h.Check(ctx) // the first look before the trim starts
	return h, nil
}

// edgeStatus adds the site's or the hub's state to /v1/status.
func (n *Node) edgeStatus(out map[string]any) {
	if srv := n.server(); srv != nil && len(n.cfg.Edge.Leaf.Remotes) > 0 {
		out["leaf_connections"] = srv.LeafConnections()
		out["js_domain"] = n.cfg.Edge.Leaf.Domain
	}
	if n.hold != nil {
		out["hub"] = n.hold.Status()
	}
	if len(n.cfg.Edge.Sites) > 0 && n.source != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sites, err := n.source.Sites(ctx)
		if err != nil {
			out["sites_error"] = err.Error()
		} else {
			out["sites"] = sites
		}
	}
}

// edgeReasons are the node's own readiness reasons: its NATS connection
// down (an external server), a site's hold alert.
func (n *Node) edgeReasons() []string {
	var reasons []string
	n.mu.Lock()
	nc := n.nc
	n.mu.Unlock()
	if nc != nil && !nc.IsConnected() {
		// An external server down: the source, commits and reads
		// through NATS all wait for it.
		reasons = append(reasons, fmt.Sprintf("NATS: not connected (%s); the client reconnects by itself", nc.Status()))
	}
	if n.hold != nil {
		if a := n.hold.Alert(); a != "" {
			reasons = append(reasons, a)
		}
	}
	return reasons
}

// edgeMetrics collects the site's and the hub's metrics.
type edgeMetrics struct {
	n *Node

	leaf, taken, behind, known, bytes, maxBytes, full, siteTaken, siteLag, siteActive *prometheus.Desc
}

func newEdgeMetrics(n *Node) *edgeMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("edgetables_"+name, help, labels, nil)
	}
	return &edgeMetrics{n: n,
		leaf:       d("leaf_connections", "Leaf node connections of the embedded server (a site: 1 while its link to the hub is up)."),
		taken:      d("hub_taken_seq", "Last source sequence of this site its hub has stored, as last learned."),
		behind:     d("hub_behind_events", "Source events of this site its hub has not taken, as far as known."),
		known:      d("hub_position_known", "1 once this site has learned what its hub has taken (until then the trim keeps everything)."),
		bytes:      d("source_bytes", "Size of the source stream in bytes."),
		maxBytes:   d("source_max_bytes", "Limit of the source stream in bytes (--source-max-bytes); once full, new events are refused."),
		full:       d("source_full", "1 while the source stream holds 90% or more of its limit (an alert)."),
		siteTaken:  d("site_taken_seq", "Hub: the last source sequence of each site stored at the hub.", "site"),
		siteLag:    d("site_lag_events", "Hub: events of each site not yet at the hub, as the site last said.", "site"),
		siteActive: d("site_last_active_seconds", "Hub: seconds since the hub last heard from each site's stream (-1: never).", "site"),
	}
}

// Describe implements prometheus.Collector.
func (c *edgeMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.leaf, c.taken, c.behind, c.known, c.bytes, c.maxBytes, c.full, c.siteTaken, c.siteLag, c.siteActive} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; a hub makes one request.
func (c *edgeMetrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := c.n
	if srv := n.server(); srv != nil && len(n.cfg.Edge.Leaf.Remotes) > 0 {
		gauge(c.leaf, float64(srv.LeafConnections()))
	}
	if n.hold != nil {
		st := n.hold.Status()
		gauge(c.taken, float64(st.Taken))
		gauge(c.behind, float64(st.Behind))
		gauge(c.known, b2f(st.Known))
		gauge(c.bytes, float64(st.SourceBytes))
		gauge(c.maxBytes, float64(st.MaxBytes))
		gauge(c.full, b2f(st.Full))
	}
	if len(n.cfg.Edge.Sites) > 0 && n.source != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sites, err := n.source.Sites(ctx)
		if err != nil {
			n.log.Warn("metrics: sites' sourcing state unknown", "err", err)
			return
		}
		for _, s := range sites {
			gauge(c.siteTaken, float64(s.Taken), s.Site)
			gauge(c.siteLag, float64(s.Lag), s.Site)
			active := -1.0
			if s.LastActive >= 0 {
				active = s.LastActive.Seconds()
			}
			gauge(c.siteActive, active, s.Site)
		}
	}
}

// sourceHold is the manager's SourceHold: the site's hold, or none (a nil
// *HubHold must not become a non-nil interface).
func (n *Node) sourceHold() port.SourceHold {
	if n.hold == nil {
		return nil
	}
	return n.hold
}

// leafConfig is the embedded server's leaf configuration: the site's app
// and source subjects stay on the site.
func (n *Node) leafConfig() jetstream.LeafConfig {
	l := n.cfg.Edge.Leaf
	if len(l.Remotes) > 0 {
		l.LocalSubjects = append(jetstream.SiteLocalSubjects(n.cfg.App, manager.SubjectsOf(n.cfg.Agents)), l.LocalSubjects...)
	}
	return l
}

// b2f is a gauge's value of b.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
