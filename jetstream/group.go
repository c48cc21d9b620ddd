package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// DefaultSessionTimeout is GroupConfig.SessionTimeout's default.
const DefaultSessionTimeout = 5 * time.Second

// Keys of the group bucket.
const (
	groupLeaderKey     = "leader"
	groupAssignmentKey = "assignment"
	groupMemberPrefix  = "member."
)

// groupMarkerTTL is the bucket's LimitMarkerTTL and the TTL of the purge
// markers Leave and Resign write: how long the marker of a removed or
// expired key stays in the bucket. It is a constant, not derived from the
// session timeout, so nodes configured differently do not keep changing the
// bucket's configuration.
const groupMarkerTTL = time.Minute

// GroupConfig configures a member of an app's consumer group.
type GroupConfig struct {
	// App is the app name (see ValidateApp). Required.
	App string
	// Node is this member's name (see ValidateNode), unique in the group
	// and stable across restarts. Required.
	Node string
	// SessionTimeout is how long a member's or the leader's lease lives
	// without renewal. Leases expire with a granularity of one second, so
	// it is rounded up to whole seconds; the minimum is 1 s. Default 5 s.
	SessionTimeout time.Duration
	// Replicas is the bucket's replication factor (R3 survives the loss of
	// one node of three). Default 1.
	Replicas int
	// Probe is the address this member's process listens on for its
	// peers to probe (see status.MemberState.Probe and WatchCrashes),
	// written with every heartbeat. Default "": the member is left to its
	// lease.
	Probe string
	// Logger receives lease changes and watch errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// Group implements port.Coordinator on the KV bucket <app>_group, with
// the keys
//
//	member.<node>   the JSON of the member's status.MemberState, under a lease
//	leader          the leader's node name, under a lease
//	assignment      the JSON of the current assign.Assignment (no lease)
//
// A lease is a per-message TTL (Nats-TTL) of SessionTimeout, renewed by
// writing the key again with a fresh TTL. When it runs out the server
// removes the value and writes a marker, which watchers see as a purge.
//
// Costs: each Heartbeat and each leader renewal is one publish stored in the
// bucket's stream (replicated to every replica, and fsynced if the server
// syncs always); a campaign by a non-leader costs three requests. Expiry
// runs on the server's one-second timer, so a lease is seen to expire
// between SessionTimeout and about SessionTimeout + 1.5 s after its last
// renewal (in a cluster, expiry also waits for a Raft proposal).
//
// A Group is safe for concurrent use; Campaign and Resign take turns.
type Group struct {
	js                    natsjs.JetStream
	kv                    natsjs.KeyValue
	node                  string
	probe                 string
	bucket, stream        string // the KV bucket and its stream
	ttl                   time.Duration
	memberKey, memberSubj string
	leaderSubj            string
	log                   *slog.Logger
	mu                    sync.Mutex     // guards leaderRev, held across Campaign and Resign
	leaderRev             uint64         // revision of our leader lease; 0: we do not hold it
	beatMu                sync.Mutex     // guards memberRev, held across Heartbeat
	memberRev             uint64         // revision of our last heartbeat; 0: none yet
	drops                 sync.WaitGroup // deletions of watch consumers created by hedged attempts
	gone                  peerNews       // peers WatchCrashes found gone, for the watches
}

var _ port.Coordinator = (*Group)(nil)

// NewGroup creates the bucket <app>_group, or updates it to this
// configuration: History 1 (a lease must not resurrect older revisions when
// it expires), per-message TTLs with expiry markers kept one minute (so
// watchers learn of expiries), file storage, cfg.Replicas. It costs three
// requests (more if the cluster is still forming: it retries) and does not
// join the group: Heartbeat does.
func NewGroup(ctx context.Context, js natsjs.JetStream, cfg GroupConfig) (*Group, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, err
	}
	if err := ValidateNode(cfg.Node); err != nil {
		return nil, err
	}
	switch {
	case cfg.SessionTimeout == 0:
		cfg.SessionTimeout = DefaultSessionTimeout
	case cfg.SessionTimeout < time.Second:
		return nil, fmt.Errorf("edgetables/jetstream: group of %s: SessionTimeout %v is below 1s", cfg.App, cfg.SessionTimeout)
	}
	// The server truncates TTLs to whole seconds; round up instead.
	ttl := (cfg.SessionTimeout + time.Second - 1).Truncate(time.Second)
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bucket := GroupBucket(cfg.App)
	kv, err := ensureKeyValue(ctx, js, natsjs.KeyValueConfig{
		Bucket:         bucket,
		Description:    "edgetables consumer group of app " + cfg.App,
		History:        1,
		Storage:        natsjs.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: groupMarkerTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: group of %s: %w", cfg.App, err)
	}
	memberKey := groupMemberPrefix + cfg.Node
	return &Group{
		js:         js,
		kv:         kv,
		node:       cfg.Node,
		probe:      cfg.Probe,
		bucket:     bucket,
		stream:     "KV_" + bucket,
		ttl:        ttl,
		memberKey:  memberKey,
		memberSubj: kvSubject(bucket, memberKey),
		leaderSubj: kvSubject(bucket, groupLeaderKey),
		log:        cfg.Logger.With("component", "group", "app", cfg.App, "node", cfg.Node),
	}, nil
}

// kvSubject is the subject a KV bucket stores key on.
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// Node returns this member's name.
func (g *Group) Node() string { return g.node }

// Bucket returns the name of the group's KV bucket.
func (g *Group) Bucket() string { return g.bucket }

// SessionTimeout returns the lease duration in effect (the configured one
// rounded up to whole seconds).
func (g *Group) SessionTimeout() time.Duration { return g.ttl }

// Heartbeat writes st (with st.Node and st.Probe set to this member's)
// to member.<node> with a lease of SessionTimeout, creating or renewing
// it. One publish. Renew at least every SessionTimeout/2 to survive one lost heartbeat.
//
// Every heartbeat after the first expects the key to be at the revision
// this member's previous heartbeat left. If it is not, someone else wrote
// it (or the lease expired): the key is read, and
//   - gone, or written by this same instance (an answer that was lost):
//     the heartbeat is written;
//   - written by another instance of this name that started earlier: it
//     returns an error wrapping manager.ErrDuplicateNode (this one must
//     stop), without writing;
//   - written by one that started later: the heartbeat is written over it,
//     and that one gets the error at its next heartbeat.
//
// So two live instances of a name are told apart within two heartbeats
// (that went through: a failed heartbeat makes the next one expect
// nothing), the later one stops, and a node restarted after a crash takes
// its old lease over, since its dead instance writes no more.
func (g *Group) Heartbeat(ctx context.Context, st status.MemberState) error {
	st.Node, st.Probe = g.node, g.probe
	data, err := EncodeMemberState(st)
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: bucket %s key %s: encode member state: %w", g.bucket, g.memberKey, err)
	}
	g.beatMu.Lock()
	defer g.beatMu.Unlock()
	// kv.Put carries no TTL: a key renewed with it would never expire.
	msg := &nats.Msg{Subject: g.memberSubj, Data: data}
	opts := []natsjs.PublishOpt{natsjs.WithMsgTTL(g.ttl)}
	if g.memberRev != 0 {
		opts = append(opts, natsjs.WithExpectLastSequencePerSubject(g.memberRev))
	}
	ack, err := g.js.PublishMsg(ctx, msg, opts...)
	if isWrongLastSequence(err) {
		if err := g.checkOtherInstance(ctx, st); err != nil {
			if !errors.Is(err, port.ErrDuplicateNode) {
				g.memberRev = 0
			}
			return err
		}
		// A fresh message: the first one carries the expectation header.
		msg = &nats.Msg{Subject: g.memberSubj, Data: data}
		ack, err = g.js.PublishMsg(ctx, msg, natsjs.WithMsgTTL(g.ttl))
	}
	if err != nil {
		// Unknown outcome (a timeout while the bucket's stream elects a
		// leader, say): the write may land later and move the revision.
		// The next heartbeat expects nothing, so that renewing the lease
		// costs no extra round trips when they matter most; the check
		// resumes from its revision on.
		g.memberRev = 0
		return fmt.Errorf("edgetables/jetstream: heartbeat of %s: bucket %s key %s: %w", g.node, g.bucket, g.memberKey, err)
	}
	g.memberRev = ack.Sequence
	return nil
}

// checkOtherInstance reads member.<node> after a heartbeat found it
// written by someone else, and returns an error wrapping
// manager.ErrDuplicateNode if an instance that started before st's holds it.
func (g *Group) checkOtherInstance(ctx context.Context, st status.MemberState) error {
	e, err := g.kv.Get(ctx, g.memberKey)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return nil // the lease expired (a pause): take it again
	}
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: heartbeat of %s: read bucket %s key %s: %w", g.node, g.bucket, g.memberKey, err)
	}
	other, err := DecodeMemberState(e.Value())
	if err != nil || other.Instance == "" || other.Instance == st.Instance {
		return nil // ours, or an older version's: write over it
	}
	if other.Started.Before(st.Started) || other.Started.Equal(st.Started) && other.Instance < st.Instance {
		return fmt.Errorf("%w: %s (instance %s, started %s) also runs as %s, since %s; stop one of them, or give each its own --name",
			port.ErrDuplicateNode, g.node, other.Instance, other.Started.Format(time.RFC3339), g.node, st.Started.Format(time.RFC3339))
	}
	g.log.Error("another instance runs under this node's name; it started later and stops at its next heartbeat",
		"other_instance", other.Instance, "other_started", other.Started, "http", other.HTTP)
	return nil
}

// Leave removes this member's key at once (a purge, which watchers see as
// the member leaving). One publish.
func (g *Group) Leave(ctx context.Context) error {
	if err := g.kv.Purge(ctx, g.memberKey, natsjs.PurgeTTL(groupMarkerTTL)); err != nil {
		return fmt.Errorf("edgetables/jetstream: leave of %s: bucket %s key %s: %w", g.node, g.bucket, g.memberKey, err)
	}
	return nil
}

// Campaign acquires the leader lease if nobody holds it, or renews it if
// this member does, and reports whether this member holds it for the next
// SessionTimeout. Renewal is a compare-and-set on the lease's revision, so a
// member whose lease ran out and was taken (or merely ran out) learns it
// lost leadership: false, nil. A lease this member held before a restart is
// taken back at once. Costs: one publish for the leader; for the others a
// failed create, a read and a read of the key (three requests). On an error
// the outcome is unknown; the next Campaign settles it.
func (g *Group) Campaign(ctx context.Context) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leaderRev != 0 {
		return g.renewLocked(ctx, g.leaderRev)
	}
	rev, err := g.kv.Create(ctx, groupLeaderKey, []byte(g.node), natsjs.KeyTTL(g.ttl))
	if err == nil {
		g.leaderRev = rev
		g.log.Info("acquired leader lease", "revision", rev)
		return true, nil
	}
	if !errors.Is(err, natsjs.ErrKeyExists) {
		return false, fmt.Errorf("edgetables/jetstream: campaign of %s: bucket %s key %s: %w", g.node, g.bucket, groupLeaderKey, err)
	}
	e, err := g.kv.Get(ctx, groupLeaderKey)
	if errors.Is(err, natsjs.ErrKeyNotFound) {
		return false, nil // it expired meanwhile; the next campaign may take it
	}
	if err != nil {
		return false, fmt.Errorf("edgetables/jetstream: campaign of %s: bucket %s key %s: %w", g.node, g.bucket, groupLeaderKey, err)
	}
	if string(e.Value()) != g.node {
		return false, nil
	}
	// Our own lease: from before a restart, or a renewal whose
	// acknowledgement was lost. Only this node writes its name.
	return g.renewLocked(ctx, e.Revision())
}

// renewLocked renews the leader lease at revision rev. g.mu is held.
func (g *Group) renewLocked(ctx context.Context, rev uint64) (bool, error) {
	msg := &nats.Msg{Subject: g.leaderSubj, Data: []byte(g.node)}
	ack, err := g.js.PublishMsg(ctx, msg, natsjs.WithMsgTTL(g.ttl), natsjs.WithExpectLastSequencePerSubject(rev))
	if err == nil {
		if g.leaderRev == 0 {
			g.log.Info("took back own leader lease", "revision", ack.Sequence)
		}
		g.leaderRev = ack.Sequence
		return true, nil
	}
	if isWrongLastSequence(err) {
		if g.leaderRev != 0 {
			g.log.Warn("lost leader lease", "revision", g.leaderRev)
		}
		g.leaderRev = 0
		return false, nil
	}
	// Unknown outcome: keep the revision, the next renewal settles it.
	return false, fmt.Errorf("edgetables/jetstream: renew leader lease of %s: bucket %s key %s revision %d: %w", g.node, g.bucket, groupLeaderKey, rev, err)
}

// isWrongLastSequence reports whether err is JetStream refusing a publish
// whose expected last (subject) sequence did not match: 10071, or 10164 on
// replicated streams.
func isWrongLastSequence(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant)
}

// Resign releases the leader lease if this member holds it (a purge
// conditional on the lease's revision, so it never removes another
// member's lease), letting another member take over without waiting for
// the lease to expire. One publish; nothing when this member does not
// believe it holds the lease.
func (g *Group) Resign(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leaderRev == 0 {
		return nil
	}
	err := g.kv.Purge(ctx, groupLeaderKey, natsjs.LastRevision(g.leaderRev), natsjs.PurgeTTL(groupMarkerTTL))
	switch {
	case err == nil, errors.Is(err, natsjs.ErrKeyRevisionMismatch):
		g.log.Info("resigned leader lease", "revision", g.leaderRev, "held", err == nil)
		g.leaderRev = 0
		return nil
	default:
		return fmt.Errorf("edgetables/jetstream: resign of %s: bucket %s key %s revision %d: %w", g.node, g.bucket, groupLeaderKey, g.leaderRev, err)
	}
}

// PublishAssignment stores a as the assignment if the stored one is still
// at revision prevRev (0: none stored), and returns the new revision. If
// another leader published meanwhile it returns an error wrapping
// manager.ErrStaleAssignment. One publish; a refused create costs one more
// read (nats.go checks whether the key was only deleted).
func (g *Group) PublishAssignment(ctx context.Context, a assign.Assignment, prevRev uint64) (uint64, error) {
	data, err := EncodeAssignment(a)
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: bucket %s key %s: encode assignment: %w", g.bucket, groupAssignmentKey, err)
	}
	var rev uint64
	if prevRev == 0 {
		rev, err = g.kv.Create(ctx, groupAssignmentKey, data)
	} else {
		rev, err = g.kv.Update(ctx, groupAssignmentKey, data, prevRev)
	}
	switch {
	case err == nil:
		return rev, nil
	case errors.Is(err, natsjs.ErrKeyExists), errors.Is(err, natsjs.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("%w: bucket %s key %s, generation %d on revision %d: %w",
			port.ErrStaleAssignment, g.bucket, groupAssignmentKey, a.Generation, prevRev, err)
	default:
		return 0, fmt.Errorf("edgetables/jetstream: publish assignment of generation %d: bucket %s key %s: %w",
			a.Generation, g.bucket, groupAssignmentKey, err)
	}
}
