package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// SiteSource is an edge site whose source stream a hub's source stream
// sources across JetStream domains (store and forward: the site's events
// reach the hub whenever the leaf link is up, in order, each once).
//
// The site's events keep their subjects behind a first token naming the
// site: an event on sensors.a.temp at site "shop1" is sensors.a.temp at the
// site and shop1.sensors.a.temp at the hub, so hub tables read
// "*.sensors.*.temp" and key=subject:1 is the site.
type SiteSource struct {
	// Site is the site's name: the first subject token of its events at
	// the hub. Required.
	Site string
	// Domain is the site's JetStream domain. Default: Site.
	Domain string
}

// apiPrefix is the JetStream API prefix of a domain.
func apiPrefix(domain string) string { return "$JS." + domain + ".API" }

// siteStreamSources returns the stream sources of sites: each site's
// stream <app>_source in its domain, subjects prefixed with the site.
func siteStreamSources(app string, sites []SiteSource) ([]*natsjs.StreamSource, error) {
	var out []*natsjs.StreamSource
	seen := map[string]bool{}
	for _, s := range sites {
		if s.Domain == "" {
			s.Domain = s.Site
		}
		if !domainRE.MatchString(s.Site) || !domainRE.MatchString(s.Domain) {
			return nil, fmt.Errorf("%w: site %q in domain %q: want letters, digits, '_' and '-'", ErrBadName, s.Site, s.Domain)
		}
		if seen[s.Site] || seen["domain "+s.Domain] {
			return nil, fmt.Errorf("%w: site %q or domain %q given twice", ErrBadName, s.Site, s.Domain)
		}
		seen[s.Site], seen["domain "+s.Domain] = true, true
		out = append(out, &natsjs.StreamSource{
			Name: SourceStream(app),
			// A source the hub has never taken from starts at the site's
			// first event. Without a start, nats-server starts a new
			// source of a stream whose first sequence is above 1 (the
			// hub's, once trimmed) at the time of that stream's last
			// message: every event a site stored before it is skipped
			// (a site added to a running hub, or one whose stream did not
			// exist yet when the hub first asked). The start applies only
			// to a source without sourcing state: later the hub resumes
			// after the last event it stored.
			OptStartSeq:       1,
			External:          &natsjs.ExternalStream{APIPrefix: apiPrefix(s.Domain)},
			SubjectTransforms: []natsjs.SubjectTransformConfig{{Source: ">", Destination: s.Site + ".>"}},
		})
	}
	return out, nil
}

// sameSources compares stream sources by what siteStreamSources sets.
func sameSources(have, want []*natsjs.StreamSource) bool {
	key := func(s *natsjs.StreamSource) string {
		k := s.Name + " " + s.FilterSubject + " " + strconv.FormatUint(s.OptStartSeq, 10)
		if s.External != nil {
			k += " " + s.External.APIPrefix
		}
		for _, t := range s.SubjectTransforms {
			k += " " + t.Source + ">" + t.Destination
		}
		return k
	}
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if key(have[i]) != key(want[i]) {
			return false
		}
	}
	return true
}

// SiteStatus is how far a hub's source stream has taken a site's events.
type SiteStatus struct {
	Site   string `json:"site"`
	Domain string `json:"domain"`
	// Taken is the last site sequence stored at the hub (0: none yet, or
	// not known to the hub's stream yet).
	Taken uint64 `json:"taken_seq"`
	// Lag is the number of the site's events not yet at the hub, as the
	// site last said (stale while the link is down: see LastActive).
	Lag uint64 `json:"lag_events"`
	// LastActive is how long ago the hub last heard from the site's
	// stream (-1: never since the hub's stream leader started).
	LastActive time.Duration `json:"last_active_ns"`
	// Error is the sourcing's last error, if any.
	Error string `json:"error,omitempty"`
}

// Sites returns the sourcing state of each site of a hub's source stream
// (nil for a stream without sites). One request.
func (s *Source) Sites(ctx context.Context) ([]SiteStatus, error) {
	if len(s.cfg.Sites) == 0 {
		return nil, nil
	}
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: sites of stream %s: %w", s.stream, err)
	}
	info := st.CachedInfo()
	var out []SiteStatus
	for _, site := range s.cfg.Sites {
		if site.Domain == "" {
			site.Domain = site.Site
		}
		ss := SiteStatus{Site: site.Site, Domain: site.Domain, LastActive: -1}
		for _, si := range info.Sources {
			if si == nil || si.External == nil || si.External.APIPrefix != apiPrefix(site.Domain) {
				continue
			}
			ss.Taken, ss.Lag, ss.LastActive = si.Seq, si.Lag, si.Active
			if si.Error != nil {
				ss.Error = si.Error.Error()
			}
		}
		out = append(out, ss)
	}
	return out, nil
}

// Defaults of HubHoldConfig.
const (
	DefaultHubHoldInterval = 2 * time.Second
	// DefaultSourceFullRatio is the share of the source stream's MaxBytes
	// at which HubHold raises its alert.
	DefaultSourceFullRatio = 0.9
)

// HubHoldConfig configures a HubHold.
type HubHoldConfig struct {
	// App is the app of the site and of the hub (their streams have the
	// same name, in different domains). Required.
	App string
	// SiteDomain is this site's JetStream domain, as the hub's stream
	// names it in its sources. Required.
	SiteDomain string
	// HubDomain is the hub's JetStream domain. Required.
	HubDomain string
	// Interval is the time between two looks at the hub and the local
	// stream (default 2s).
	Interval time.Duration
	// FullRatio is the share of the local source stream's MaxBytes at
	// which the alert is raised (default 0.9).
	FullRatio float64
	// Logger receives the alerts (default slog.Default()).
	Logger *slog.Logger
}

// HubHold is a site's view of what its hub has taken from the site's
// source stream, for the trim (it implements port.SourceHold).
//
// It asks the hub's JetStream, across the leaf link, for the hub stream's
// info ($JS.<hub>.API.STREAM.INFO): the hub reports, per source, the last
// origin sequence it has stored (from its persisted sourcing state, not
// the sourcing consumer's delivered sequence, which may be ahead of what
// the hub stored when the link broke). That value only grows while the
// hub keeps its data, so a stale one is a safe lower bound: while the link
// is down the last value learned holds the trim back, and after a restart
// with the link down nothing is known and nothing is trimmed.
//
// The hub's position is taken only once the hub has heard from this site's
// stream since it was created (the hub's source was active after the
// stream's creation time): a site whose stream is new (its device replaced,
// its data directory emptied) starts its sequences at 1 again, and until
// the hub's sourcing notices the new stream, the hub still reports the
// last sequence it took of the old one. Trimming by that position would
// remove events the hub never took.
//
// It also watches the local source stream's size: once the events kept
// for the hub (or not yet processed) fill FullRatio of its MaxBytes, it
// logs an error and Alert says so (the stream refuses new events when
// full: nothing is dropped silently).
type HubHold struct {
	cfg   HubHoldConfig
	local natsjs.JetStream
	hub   natsjs.JetStream

	mu      sync.Mutex
	snap    HubHoldStatus
	created time.Time // the local source stream's, at the last look
	stale   bool      // the hub's position was refused at the last look
}

// HubHoldStatus is a HubHold's last look.
type HubHoldStatus struct {
	HubDomain string `json:"hub_domain"`
	// Known says whether the hub's position is known; Taken is the last
	// site source sequence the hub has stored.
	Known bool   `json:"known"`
	Taken uint64 `json:"taken_seq"`
	// LearnedAt is when Taken was last read from the hub.
	LearnedAt time.Time `json:"learned_at,omitzero"`
	// HubError is the last failed look at the hub (link down, hub stream
	// missing, this site not among its sources), "" after a success.
	HubError string `json:"hub_error,omitempty"`
	// SourceLast is the local source stream's last sequence; Behind is
	// SourceLast less Taken (events the hub has not taken, as far as known).
	SourceLast uint64 `json:"source_last_seq"`
	Behind     uint64 `json:"hub_behind_events"`
	// SourceBytes and MaxBytes are the local source stream's size and
	// limit; Full is set once SourceBytes reaches FullRatio of MaxBytes.
	SourceBytes uint64 `json:"source_bytes"`
	MaxBytes    int64  `json:"source_max_bytes"`
	Full        bool   `json:"source_full"`
}

// NewHubHold returns the hold of a site whose client connection is nc.
func NewHubHold(nc *nats.Conn, cfg HubHoldConfig) (*HubHold, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, err
	}
	if !domainRE.MatchString(cfg.SiteDomain) || !domainRE.MatchString(cfg.HubDomain) {
		return nil, fmt.Errorf("%w: site domain %q, hub domain %q", ErrBadName, cfg.SiteDomain, cfg.HubDomain)
	}
	if cfg.SiteDomain == cfg.HubDomain {
		return nil, fmt.Errorf("%w: the site and the hub share the domain %q", ErrBadName, cfg.HubDomain)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultHubHoldInterval
	}
	if cfg.FullRatio <= 0 || cfg.FullRatio > 1 {
		cfg.FullRatio = DefaultSourceFullRatio
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	local, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: hub hold: %w", err)
	}
	hub, err := natsjs.NewWithDomain(nc, cfg.HubDomain)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: hub hold: %w", err)
	}
	h := &HubHold{cfg: cfg, local: local, hub: hub}
	h.snap.HubDomain = cfg.HubDomain
	return h, nil
}

// Taken implements port.SourceHold.
func (h *HubHold) Taken() (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snap.Taken, h.snap.Known
}

// Status returns the last look.
func (h *HubHold) Status() HubHoldStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snap
}

// Alert returns why the site needs attention ("" if it does not): its
// source stream is nearly full.
func (h *HubHold) Alert() string {
	st := h.Status()
	if !st.Full {
		return ""
	}
	return fmt.Sprintf("source stream nearly full (%d of %d bytes); the hub (domain %s) has taken up to sequence %d of %d (known: %v; %s): raise --source-max-bytes or restore the link, or new events are refused",
		st.SourceBytes, st.MaxBytes, st.HubDomain, st.Taken, st.SourceLast, st.Known, orNone(st.HubError))
}

func orNone(s string) string {
	if s == "" {
		return "hub reachable"
	}
	return "last error: " + s
}

// Run looks at the hub and the local stream every Interval until ctx
// ends.
func (h *HubHold) Run(ctx context.Context) {
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		h.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// lookTimeout bounds one request of a look.
const lookTimeout = 2 * time.Second

// Check looks once at the hub and at the local stream and updates the
// status, logging changes of the hub's reachability and of the alert.
func (h *HubHold) Check(ctx context.Context) {
	log := h.cfg.Logger.With("component", "hub-hold", "hub_domain", h.cfg.HubDomain)
	// The local stream first: the hub's answer must be no older than it.
	rctx, cancel := context.WithTimeout(ctx, lookTimeout)
	var info *natsjs.StreamInfo
	st, lerr := h.local.Stream(rctx, SourceStream(h.cfg.App))
	if lerr == nil {
		info = st.CachedInfo()
	}
	cancel()
	taken, active, hubErr := h.hubTaken(ctx)
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	old := h.snap
	s := &h.snap
	if info != nil && !info.Created.Equal(h.created) {
		if !h.created.IsZero() {
			// The stream was created again under the node: what the hub
			// took was the old stream's.
			s.Known, s.Taken = false, 0
		}
		h.created = info.Created
	}
	stale := ""
	if hubErr == nil {
		stale = staleTaken(taken, active, info, time.Now())
		if stale != "" {
			hubErr = errors.New(stale)
		}
	}
	wasStale := h.stale
	h.stale = stale != ""
	if hubErr == nil {
		s.Known, s.Taken, s.LearnedAt, s.HubError = true, taken, time.Now(), ""
	} else {
		s.HubError = hubErr.Error()
	}
	if info != nil {
		s.SourceLast, s.SourceBytes, s.MaxBytes = info.State.LastSeq, info.State.Bytes, info.Config.MaxBytes
		s.Full = s.MaxBytes > 0 && float64(s.SourceBytes) >= h.cfg.FullRatio*float64(s.MaxBytes)
	}
	s.Behind = 0
	if s.SourceLast > s.Taken {
		s.Behind = s.SourceLast - s.Taken
	}
	now := *s
	h.mu.Unlock()

	switch {
	case stale != "" && !wasStale:
		log.Warn("the hub's position is not this source stream's yet; the site keeps every event the hub has not taken",
			"hub_taken", taken, "hub_active_ago", active, "known_taken", now.Taken, "known", now.Known, "why", stale)
	case stale != "":
	case hubErr != nil && old.HubError == "":
		log.Warn("hub unreachable or not sourcing this site; the site keeps every event the hub has not taken",
			"known_taken", now.Taken, "known", now.Known, "err", hubErr)
	case hubErr == nil && old.HubError != "":
		log.Info("hub reachable again", "taken", now.Taken, "behind", now.Behind)
	}
	switch {
	case now.Full && !old.Full:
		log.Error("source stream nearly full: the hub has not taken its events (or the node lags); new events are refused once it is full",
			"bytes", now.SourceBytes, "max_bytes", now.MaxBytes, "hub_taken", now.Taken, "last", now.SourceLast, "known", now.Known)
	case !now.Full && old.Full:
		log.Info("source stream no longer nearly full", "bytes", now.SourceBytes, "max_bytes", now.MaxBytes)
	}
	if lerr != nil && ctx.Err() == nil {
		log.Debug("local source stream state unknown", "err", lerr)
	}
}

// errNotSourced says the hub's stream does not source this site.
var errNotSourced = errors.New("the hub's source stream does not source this site")

// hubTaken asks the hub for the last sequence of this site it stored, and
// how long ago its sourcing last heard from this site (negative: not since
// the hub's stream leader started).
func (h *HubHold) hubTaken(ctx context.Context) (uint64, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, lookTimeout)
	defer cancel()
	st, err := h.hub.Stream(rctx, SourceStream(h.cfg.App))
	if err != nil {
		return 0, 0, fmt.Errorf("hub stream %s: %w", SourceStream(h.cfg.App), err)
	}
	info := st.CachedInfo()
	i := slices.IndexFunc(info.Sources, func(si *natsjs.StreamSourceInfo) bool {
		return si != nil && si.Name == SourceStream(h.cfg.App) && si.External != nil && si.External.APIPrefix == apiPrefix(h.cfg.SiteDomain)
	})
	if i < 0 {
		return 0, 0, fmt.Errorf("%w (domain %s)", errNotSourced, h.cfg.SiteDomain)
	}
	return info.Sources[i].Seq, info.Sources[i].Active, nil
}

// staleTaken says why the hub's position taken, last active ago, cannot be
// trusted for the local source stream (info, at now), or "" when it can:
// it must come from sourcing that heard from the stream after the stream
// was created, and not lie beyond the stream's last sequence. The hub's
// age of its last contact is measured on its clock, but only as a
// duration, and the round trip of the request makes it look older, not
// younger: the check errs on the side of keeping events.
func staleTaken(taken uint64, active time.Duration, info *natsjs.StreamInfo, now time.Time) string {
	switch {
	case info == nil:
		return "the local source stream could not be read"
	case active < 0:
		return "the hub has not heard from this site since its stream leader started"
	case !now.Add(-active).After(info.Created):
		return fmt.Sprintf("the hub last heard from this site %s ago, before this source stream was created (%s): its position is the previous stream's",
			active.Round(time.Millisecond), info.Created.UTC().Format(time.RFC3339))
	case taken > info.State.LastSeq:
		return fmt.Sprintf("the hub reports sequence %d taken, beyond this source stream's last, %d: its position is a previous stream's", taken, info.State.LastSeq)
	}
	return ""
}
