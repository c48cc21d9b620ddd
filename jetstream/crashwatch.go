package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Crash detection. A member's lease runs out SessionTimeout to
// SessionTimeout + 1.5 s after its last renewal, so a crashed node's
// partitions wait that long for a new owner. But a process that dies
// (kill -9, a panic, the OOM killer) closes its sockets at once: every
// route of its embedded server closes, and its route port refuses
// connections. A paused process (SIGSTOP) or one cut off by the network
// does neither: its routes stay until the server's pings fail, and a
// connection attempt is accepted or times out. So a member whose routes
// all closed and whose probe address refuses a connection is gone, and
// its peers may remove its lease without waiting for it to expire.
//
// Removing a live member's lease is safe, only costly: it is what a long
// pause already does. The member's next heartbeat writes it again, its
// partitions come back by the next assignment, and every write it makes
// in between is fenced by the changelog's expected sequences.

// CrashWatchConfig configures WatchCrashes. The zero value is usable.
type CrashWatchConfig struct {
	// Every is how often the server's routes are listed. Default 100ms.
	Every time.Duration
	// ProbeFor is how long a peer whose routes are gone is probed (once
	// per Every) before it is left to its lease: a dying process may
	// close its routes a moment before its listener. Default 1s.
	ProbeFor time.Duration
	// DialTimeout bounds one probe. Default 250ms.
	DialTimeout time.Duration
	// Logger receives evictions and failed probes. Default slog.Default().
	Logger *slog.Logger
}

func (c *CrashWatchConfig) setDefaults() {
	if c.Every <= 0 {
		c.Every = 100 * time.Millisecond
	}
	if c.ProbeFor <= 0 {
		c.ProbeFor = time.Second
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 250 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// WatchCrashes runs until ctx ends: it lists srv's routes every
// cfg.Every, and when the last route to a peer server closes, it tells
// g's watches (one that reads from that server starts over at once), and
// probes that peer's member of g for up to cfg.ProbeFor: a member that wrote a
// probe address (GroupConfig.Probe) which now refuses connections is
// gone, and its member lease is removed, and its leader lease if it held
// it (each conditional on the revision seen, so a new instance's lease
// is never touched). The removal is retried until it is done or the
// lease would have expired anyway. Peers are named by their server
// names, which are their node names in an embedded cluster. Each removal
// is logged.
func WatchCrashes(ctx context.Context, srv *Server, g *Group, cfg CrashWatchConfig) {
	cfg.setDefaults()
	w := &crashWatch{g: g, cfg: cfg, suspects: map[string]*suspect{},
		log: cfg.Logger.With("component", "crashwatch", "bucket", g.bucket, "node", g.node)}
	routed := map[string]string{} // peers with a route at the last listing → IP
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := routedPeers(srv.ns)
		for peer, ip := range routed {
			if _, ok := now[peer]; !ok && w.suspects[peer] == nil {
				w.suspects[peer] = &suspect{ip: ip, since: time.Now()}
				// A watch reading from that server hears nothing more,
				// whatever the probe finds: it starts over at once.
				g.gone.announce(peer)
			}
		}
		routed = now
		for peer, s := range w.suspects {
			_, back := now[peer]
			if w.settled(ctx, peer, s, back) {
				delete(w.suspects, peer)
			}
		}
	}
}

// crashWatch is WatchCrashes's state.
type crashWatch struct {
	g        *Group
	cfg      CrashWatchConfig
	log      *slog.Logger
	suspects map[string]*suspect // peers whose routes all closed
}

// suspect is a peer whose routes all closed.
type suspect struct {
	ip    string    // where its last route came from
	since time.Time // when its last route closed
	rev   uint64    // its member lease's revision, once found gone
}

// settled takes one step with peer, whose routes all closed (back: one
// came back since), and reports whether it is done with it: the peer is
// alive or absent, left to its lease, or its leases are removed.
func (w *crashWatch) settled(ctx context.Context, peer string, s *suspect, back bool) bool {
	if s.rev == 0 {
		switch {
		case back:
			return true // a route came back before it was found gone
		case time.Since(s.since) > w.cfg.ProbeFor:
			return true // left to its lease
		}
		pctx, cancel := context.WithTimeout(ctx, w.cfg.DialTimeout+w.g.ttl/2)
		rev, verdict, err := w.g.probeMember(pctx, peer, s.ip, w.cfg.DialTimeout)
		cancel()
		switch {
		case err != nil:
			w.log.Debug("probe of a peer whose routes closed", "peer", peer, "err", err)
			return false
		case verdict != memberGone:
			return verdict == memberAbsent
		}
		s.rev = rev
		w.log.Info("a peer's process is gone (its routes closed and its probe address refuses connections); removing its leases",
			"peer", peer, "revision", rev, "after", time.Since(s.since).Round(time.Millisecond))
	}
	// Removal: retried while the bucket's stream elects a leader, until
	// the lease would have expired by itself.
	pctx, cancel := context.WithTimeout(ctx, w.g.ttl/2)
	removed, err := w.g.evict(pctx, peer, s.rev)
	cancel()
	switch {
	case err == nil && removed:
		w.log.Info("removed the leases of a gone peer", "peer", peer, "revision", s.rev,
			"after", time.Since(s.since).Round(time.Millisecond))
		return true
	case err == nil:
		w.log.Info("a gone peer is back (its lease was written again); its leases stay", "peer", peer)
		return true
	case time.Since(s.since) > 2*w.g.ttl:
		w.log.Warn("cannot remove the leases of a gone peer; they expire instead", "peer", peer, "err", err)
		return true
	case ctx.Err() == nil:
		w.log.Debug("remove the leases of a gone peer; retrying", "peer", peer, "err", err)
	}
	return false
}

// routedPeers returns the servers ns has a route to, each with the IP of
// one of its routes.
func routedPeers(ns *server.Server) map[string]string {
	peers := map[string]string{}
	rz, err := ns.Routez(nil)
	if err != nil {
		return peers
	}
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers[r.RemoteName] = r.IP
		}
	}
	return peers
}

// A probeVerdict is what probeMember found.
type probeVerdict int

const (
	memberAbsent probeVerdict = iota // no lease, or no probe address: nothing to do
	memberAlive                      // its probe address answered, or could not be reached
	memberGone                       // its probe address refused a connection
)

// probeMember reads node's member lease and dials the probe address it
// wrote (an unspecified host taken from routeIP). It returns the lease's
// revision with memberGone if the connection was refused.
func (g *Group) probeMember(ctx context.Context, node, routeIP string, dialTimeout time.Duration) (uint64, probeVerdict, error) {
	key := groupMemberPrefix + node
	e, err := g.kv.Get(ctx, key)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return 0, memberAbsent, nil
	}
	if err != nil {
		return 0, memberAbsent, fmt.Errorf("edgetables/jetstream: bucket %s key %s: %w", g.bucket, key, err)
	}
	st, err := DecodeMemberState(e.Value())
	if err != nil || st.Probe == "" {
		return 0, memberAbsent, nil
	}
	addr, ok := probeAddr(st.Probe, routeIP)
	if !ok {
		return 0, memberAbsent, nil
	}
	if !refused(ctx, addr, dialTimeout) {
		return 0, memberAlive, nil
	}
	return e.Revision(), memberGone, nil
}

// probeAddr is the address to dial for a probe address written as probe,
// its unspecified host (0.0.0.0, ::, empty) replaced by routeIP.
func probeAddr(probe, routeIP string) (string, bool) {
	host, port, err := net.SplitHostPort(probe)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if routeIP == "" {
			return "", false
		}
		host = routeIP
	}
	return net.JoinHostPort(host, port), true
}

// refused reports whether a TCP connection to addr was refused: nothing
// listens there. An accepted connection, a timeout or an unreachable
// network are not refusals.
func refused(ctx context.Context, addr string, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// evict removes node's member lease if it is still at revision rev, and
// then the leader lease if node holds it. It reports false, touching
// nothing, when the member lease was written since: a new instance of
// node (a quick restart), whose leases, the leader's too, are its own. A
// member lease already removed (by an earlier try, or another peer's
// watch) is not written since: the leader lease is still checked.
func (g *Group) evict(ctx context.Context, node string, rev uint64) (bool, error) {
	key := groupMemberPrefix + node
	err := g.kv.Purge(ctx, key, natsjs.LastRevision(rev), natsjs.PurgeTTL(groupMarkerTTL))
	switch {
	case errors.Is(err, natsjs.ErrKeyRevisionMismatch):
		if _, err := g.kv.Get(ctx, key); !errors.Is(err, natsjs.ErrKeyNotFound) {
			if err != nil {
				return false, fmt.Errorf("edgetables/jetstream: read lease of %s: bucket %s key %s: %w", node, g.bucket, key, err)
			}
			return false, nil
		}
	case err != nil:
		return false, fmt.Errorf("edgetables/jetstream: remove lease of %s: bucket %s key %s revision %d: %w", node, g.bucket, key, rev, err)
	}
	e, err := g.kv.Get(ctx, groupLeaderKey)
	switch {
	case errors.Is(err, natsjs.ErrKeyNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("edgetables/jetstream: read leader lease: bucket %s key %s: %w", g.bucket, groupLeaderKey, err)
	case string(e.Value()) != node:
		return true, nil
	}
	err = g.kv.Purge(ctx, groupLeaderKey, natsjs.LastRevision(e.Revision()), natsjs.PurgeTTL(groupMarkerTTL))
	if err != nil && !errors.Is(err, natsjs.ErrKeyRevisionMismatch) {
		return false, fmt.Errorf("edgetables/jetstream: remove leader lease of %s: bucket %s key %s revision %d: %w", node, g.bucket, groupLeaderKey, e.Revision(), err)
	}
	return true, nil
}

// peerNews tells a group's watches which peers' routes WatchCrashes saw
// close, so that a watch whose consumer lived on one starts over at once
// rather than after its missed heartbeats. The zero value is ready.
type peerNews struct {
	mu   sync.Mutex
	ch   chan struct{}        // closed and replaced by every announcement
	when map[string]time.Time // peer → when its routes last closed
}

// announce records that peer's routes closed now and wakes the waiters.
func (p *peerNews) announce(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.when == nil {
		p.when = map[string]time.Time{}
	}
	p.when[peer] = time.Now()
	if p.ch != nil {
		close(p.ch)
		p.ch = nil
	}
}

// changed returns a channel closed at the next announcement.
func (p *peerNews) changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil {
		p.ch = make(chan struct{})
	}
	return p.ch
}

// since reports whether peer's routes closed after t.
func (p *peerNews) since(peer string, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.when[peer]
	return ok && w.After(t)
}
