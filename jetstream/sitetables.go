package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Errors of SiteTables.
var (
	// ErrUnknownSite is returned for a site the hub does not source.
	ErrUnknownSite = errors.New("edgetables/jetstream: unknown site")
	// ErrSiteNotSynced is returned while the hub has not yet found any
	// changelog stream of a site (its link has not been up since the hub
	// node started, and the hub stream does not exist yet).
	ErrSiteNotSynced = errors.New("edgetables/jetstream: the site's changelogs are not known at the hub yet")
	// ErrNoRecord is returned by SiteTables.Get for a key the site's table
	// does not hold (never written, deleted, or expired), as far as the hub
	// has taken the site's changelog.
	ErrNoRecord = errors.New("edgetables/jetstream: no record of the key")
)

// DefaultSiteTablesInterval is the time between two looks at the sites'
// changelog streams.
const DefaultSiteTablesInterval = 5 * time.Second

// SiteChangelogStream is the name of the hub stream holding site's table
// changelogs: "<app>_site_<site>_changelog".
func SiteChangelogStream(app, site string) string { return app + "_site_" + site + "_changelog" }

// SiteTablesConfig configures SiteTables.
type SiteTablesConfig struct {
	// App is the app of the sites and of the hub. Required.
	App string
	// Sites are the sites (as for a hub's source stream). Required.
	Sites []SiteSource
	// Replicas is the hub streams' replication factor. Default 1.
	Replicas int
	// Logger receives the changes of each site's streams. Default
	// slog.Default().
	Logger *slog.Logger
}

// SiteTables keeps, at a hub, a copy of every site's table changelogs,
// and reads them: one hub stream per site, SiteChangelogStream, sourcing
// every changelog stream <app>_changelog_<p> of the site's domain, subjects
// kept, one message per subject (per key, as on the site), so it holds the
// latest committed value of every key of every table of the site. Sourcing
// is store and forward: while the link is down the hub serves what it last
// took. The site's partitions are found by listing its streams across the
// link (Sync); the sources are only ever added, so a site whose link is
// down keeps its copy.
type SiteTables struct {
	cfg SiteTablesConfig
	js  natsjs.JetStream
	// sites' JetStream contexts, by site name
	remote map[string]natsjs.JetStream
	domain map[string]string

	mu      sync.Mutex
	sources map[string][]string // site -> its changelog streams sourced
	errs    map[string]string   // site -> last Sync error
}

// NewSiteTables returns the site tables of a hub whose JetStream is js
// (its own domain). It sends nothing: call Sync or Run.
func NewSiteTables(js natsjs.JetStream, cfg SiteTablesConfig) (*SiteTables, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, err
	}
	if _, err := siteStreamSources(cfg.App, cfg.Sites); err != nil {
		return nil, err
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &SiteTables{cfg: cfg, js: js, remote: map[string]natsjs.JetStream{}, domain: map[string]string{},
		sources: map[string][]string{}, errs: map[string]string{}}
	for _, s := range cfg.Sites {
		if s.Domain == "" {
			s.Domain = s.Site
		}
		rjs, err := natsjs.NewWithDomain(js.Conn(), s.Domain)
		if err != nil {
			return nil, fmt.Errorf("edgetables/jetstream: site %s: %w", s.Site, err)
		}
		t.remote[s.Site], t.domain[s.Site] = rjs, s.Domain
	}
	return t, nil
}

// Run syncs every interval (DefaultSiteTablesInterval if <= 0) until ctx
// ends.
func (t *SiteTables) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSiteTablesInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t.Sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Sync looks once at each site: the hub stream's current sources (after a
// restart), then the site's changelog streams across the link, and creates
// or updates the hub stream when the site has streams it does not source
// yet. A site that cannot be reached keeps its sources; its error shows in
// Status.
func (t *SiteTables) Sync(ctx context.Context) {
	for _, s := range t.cfg.Sites {
		err := t.syncSite(ctx, s.Site)
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		old := t.errs[s.Site]
		if err != nil {
			t.errs[s.Site] = err.Error()
		} else {
			delete(t.errs, s.Site)
		}
		t.mu.Unlock()
		if err != nil && old == "" {
			t.cfg.Logger.Warn("site tables: cannot list the site's changelogs; the hub serves what it took", "site", s.Site, "err", err)
		}
	}
}

func (t *SiteTables) syncSite(ctx context.Context, site string) error {
	stream := SiteChangelogStream(t.cfg.App, site)
	t.mu.Lock()
	have := t.sources[site]
	t.mu.Unlock()
	if have == nil {
		rctx, cancel := context.WithTimeout(ctx, lookTimeout)
		st, err := t.js.Stream(rctx, stream)
		cancel()
		switch {
		case err == nil:
			for _, src := range st.CachedInfo().Config.Sources {
				have = append(have, src.Name)
			}
			t.setSources(site, have)
		case !errors.Is(err, natsjs.ErrStreamNotFound):
			return fmt.Errorf("hub stream %s: %w", stream, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, lookTimeout)
	defer cancel()
	names := t.remote[site].StreamNames(rctx, natsjs.WithStreamListSubject(t.cfg.App+".changelog.>"))
	var found []string
	for n := range names.Name() {
		if strings.HasPrefix(n, t.cfg.App+"_changelog_") {
			found = append(found, n)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("changelog streams of domain %s: %w", t.domain[site], err)
	}
	want := slices.Clone(have)
	for _, n := range found {
		if !slices.Contains(want, n) {
			want = append(want, n)
		}
	}
	if len(want) == len(have) {
		return nil
	}
	slices.SortFunc(want, func(a, b string) int { return streamPartition(a) - streamPartition(b) })
	sc := natsjs.StreamConfig{
		Name:              stream,
		Description:       fmt.Sprintf("edgetables: table changelogs of site %s (app %s), sourced from domain %s", site, t.cfg.App, t.domain[site]),
		Retention:         natsjs.LimitsPolicy,
		Storage:           natsjs.FileStorage,
		Replicas:          t.cfg.Replicas,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: 1,
		Discard:           natsjs.DiscardOld,
		AllowMsgTTL:       true, // records with a TTL expire at the hub too
		AllowDirect:       true,
	}
	for _, n := range want {
		// OptStartSeq 1: a changelog found later (a new table or
		// partition) is taken whole, not from the time of this stream's
		// last record, where nats-server starts a new source of a stream
		// whose first sequence is above 1 (see siteStreamSources).
		sc.Sources = append(sc.Sources, &natsjs.StreamSource{Name: n, OptStartSeq: 1, External: &natsjs.ExternalStream{APIPrefix: apiPrefix(t.domain[site])}})
	}
	if _, err := ensureStream(ctx, t.js, sc); err != nil {
		return fmt.Errorf("hub stream %s: %w", stream, err)
	}
	t.setSources(site, want)
	t.cfg.Logger.Info("site tables: sourcing the site's changelogs", "site", site, "stream", stream, "sources", want)
	return nil
}

func (t *SiteTables) setSources(site string, s []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sources[site] = s
}

// streamPartition is the partition of a changelog stream's name (-1 if
// none).
func streamPartition(name string) int {
	i := strings.LastIndexByte(name, '_')
	p, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return p
}

// SiteRecord is a record of a site's table as the hub holds it.
type SiteRecord struct {
	Site      string
	Table     string
	Key       []byte
	Value     []byte
	Partition int
	// Seq is the record's sequence in the hub stream.
	Seq uint64
}

// Get returns the latest record of key in site's table (one direct get by
// subject). A key without a live record gives an error wrapping
// ErrNoRecord; an unknown site ErrUnknownSite; a site whose changelogs the
// hub has not found yet ErrSiteNotSynced.
func (t *SiteTables) Get(ctx context.Context, site, table string, key []byte) (SiteRecord, error) {
	if _, ok := t.remote[site]; !ok {
		return SiteRecord{}, fmt.Errorf("%w: %q", ErrUnknownSite, site)
	}
	if err := ValidateToken("table", table); err != nil {
		return SiteRecord{}, err
	}
	if len(key) > MaxKeyLen {
		return SiteRecord{}, fmt.Errorf("%w: %d bytes (max %d)", ErrKeyTooLong, len(key), MaxKeyLen)
	}
	stream := SiteChangelogStream(t.cfg.App, site)
	t.mu.Lock()
	synced := len(t.sources[site]) > 0
	t.mu.Unlock()
	if !synced {
		return SiteRecord{}, fmt.Errorf("%w: site %s", ErrSiteNotSynced, site)
	}
	st, err := t.js.Stream(ctx, stream)
	if err != nil {
		return SiteRecord{}, fmt.Errorf("edgetables/jetstream: hub stream %s: %w", stream, err)
	}
	// The key's partition is the site's business: any partition's record
	// subject of the key matches.
	subj := t.cfg.App + ".changelog.*." + table + "." + EncodeKey(key)
	msg, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return SiteRecord{}, fmt.Errorf("%w: site %s table %s key %q", ErrNoRecord, site, table, key)
	}
	if err != nil {
		return SiteRecord{}, fmt.Errorf("edgetables/jetstream: hub stream %s: last message on %s: %w", stream, subj, err)
	}
	p, err := strconv.Atoi(strings.Split(strings.TrimPrefix(msg.Subject, t.cfg.App+".changelog."), ".")[0])
	if err != nil {
		return SiteRecord{}, fmt.Errorf("%w: stream %s sequence %d: %q", ErrBadSubject, stream, msg.Sequence, msg.Subject)
	}
	e, err := decodeEntry(p, stream, recordPrefix(t.cfg.App, p), CommitSubject(t.cfg.App, p), msg.Sequence, msg.Subject, msg.Header, msg.Data)
	if err != nil {
		return SiteRecord{}, err
	}
	if e.Commit != nil || e.Record.Delete {
		return SiteRecord{}, fmt.Errorf("%w: site %s table %s key %q (deleted)", ErrNoRecord, site, table, key)
	}
	return SiteRecord{Site: site, Table: e.Record.Table, Key: e.Record.Key, Value: e.Record.Value, Partition: p, Seq: msg.Sequence}, nil
}

// SiteTablesStatus is how far the hub has taken a site's changelogs.
type SiteTablesStatus struct {
	Site   string `json:"site"`
	Stream string `json:"stream"`
	// Sources are the site's changelog streams the hub sources.
	Sources []string `json:"sources"`
	// Records is the number of records (live keys and commit markers) at
	// the hub.
	Records uint64 `json:"records"`
	// Lag is the number of the site's changelog messages not yet at the
	// hub, summed over its partitions, as the site last said (stale while
	// the link is down: see LastActive).
	Lag uint64 `json:"lag_records"`
	// LastActive is the longest time since the hub last heard from one of
	// the site's changelog streams (-1: one of them never since the hub's
	// stream leader started).
	LastActive time.Duration `json:"last_active_ns"`
	// Error is the last failure to list the site's streams or a sourcing
	// error.
	Error string `json:"error,omitempty"`
}

// Status returns each site's state (one request per site that has a hub
// stream).
func (t *SiteTables) Status(ctx context.Context) []SiteTablesStatus {
	var out []SiteTablesStatus
	for _, s := range t.cfg.Sites {
		stream := SiteChangelogStream(t.cfg.App, s.Site)
		t.mu.Lock()
		ss := SiteTablesStatus{Site: s.Site, Stream: stream, Sources: slices.Clone(t.sources[s.Site]), Error: t.errs[s.Site], LastActive: -1}
		t.mu.Unlock()
		if len(ss.Sources) > 0 {
			rctx, cancel := context.WithTimeout(ctx, lookTimeout)
			st, err := t.js.Stream(rctx, stream)
			cancel()
			if err != nil {
				ss.Error = err.Error()
			} else {
				info := st.CachedInfo()
				ss.Records = info.State.Msgs
				ss.LastActive = 0
				for _, si := range info.Sources {
					if si == nil {
						continue
					}
					ss.Lag += si.Lag
					if si.Active < 0 || ss.LastActive < 0 {
						ss.LastActive = -1
					} else {
						ss.LastActive = max(ss.LastActive, si.Active)
					}
					if si.Error != nil && ss.Error == "" {
						ss.Error = si.Error.Error()
					}
				}
			}
		}
		out = append(out, ss)
	}
	return out
}
