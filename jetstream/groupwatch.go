package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// Group.Watch's consumer.
const (
	// watchExpiry is how long one pull request lives.
	watchExpiry = 5 * time.Second
	// watchHeartbeat is how often an idle consumer hears from the server;
	// two missed heartbeats make the watch start over. After a node's
	// death the survivors whose watch read from it learn the new
	// assignment only once their watch started over.
	watchHeartbeat = 500 * time.Millisecond
	// watchPoll is how often Watch checks whether its connection
	// reconnected (messages may have been lost meanwhile: it starts over).
	watchPoll = time.Second
	// watchCreateTimeout bounds one attempt to read the stream's last
	// sequence from its leader before the consumer is created (with
	// createHedged): a request sent while the stream elects a leader gets
	// no answer. The first attempt gets watchFirstCreateTimeout.
	watchCreateTimeout      = 2 * time.Second
	watchFirstCreateTimeout = time.Second
	// watchHedge is how often that read is sent again while unanswered
	// (see hedged), watchHedges times at most per attempt.
	watchHedge  = 250 * time.Millisecond
	watchHedges = 8
	// watchRetryWait is the pause between failed attempts.
	watchRetryWait = 250 * time.Millisecond
	// watchFailWait is the pause after an error that retries do not cure
	// (the bucket is gone).
	watchFailWait = 5 * time.Second
	// keyPollEvery is how often a watch that starts over reads the bucket
	// key by key meanwhile (see pollKeys), and keyPollTimeout bounds one
	// such read.
	keyPollEvery   = 250 * time.Millisecond
	keyPollTimeout = time.Second
)

// kvOperationHeader marks KV delete and purge markers.
const kvOperationHeader = "KV-Operation"

// errWatchGap means the watch missed a message.
var errWatchGap = errors.New("edgetables/jetstream: group watch missed a message")

// Watch follows the bucket and returns a channel of group views: the first
// once the current content is read, then one after every change (a renewal
// that changes nothing sends nothing). The channel holds one view, always
// the latest: an unread older view is replaced, so a slow reader skips views
// but never delays the watcher.
//
// When the watch cannot trust its view to be complete (its connection
// reconnected, its consumer was lost with a node of the cluster, a message
// is missing) it reads the bucket again from the start on a new consumer
// and sends the view once that is done. A lost consumer is noticed within
// 1 s (two missed idle heartbeats), and its creation is hedged (see
// createHedged: a consumer placed on the dead server does not hold it up),
// so the view recovers a second or two after a node failure.
// (kv.Watch, nats.go's push ordered consumer, noticed only after 10 to 20 s
// in the same test; nats.go's pull ordered consumer waits 10 s for the
// answer to each re-creation request, and its iterator does not report a
// consumer that went offline.)
//
// Costs: one goroutine and one ephemeral consumer per call; two heartbeat
// messages a second and one pull request every few seconds while idle; a
// full read of the bucket (one message per member, plus two) on each start.
//
// The goroutine runs until ctx ends, then deletes its consumer and closes
// the channel as its last act, so reading until the channel is closed waits
// for it. Watch retries creating its first consumer until ctx ends, and
// returns an error if that fails or the bucket does not exist.
func (g *Group) Watch(ctx context.Context) (<-chan port.GroupView, error) {
	w, err := g.openWatch(ctx)
	if err != nil {
		g.drops.Wait()
		return nil, err
	}
	out := make(chan port.GroupView, 1)
	go g.watch(ctx, w, out)
	return out, nil
}

// groupWatch is one consumer reading the whole bucket from its start.
type groupWatch struct {
	cons       natsjs.Consumer
	cc         natsjs.ConsumeContext
	events     chan watchEvent // from nats.go's callbacks
	done       chan struct{}   // closed when the watch stops reading events
	pending    uint64          // messages to read before the view is complete
	last       uint64          // the stream's last sequence, by its leader, before creation
	reconnects uint64          // the connection's reconnect count at creation
	server     string          // the server the consumer lives on ("" if unknown)
	opened     time.Time
}

// watchEvent is a message of the bucket or an error of its consumer.
type watchEvent struct {
	msg natsjs.Msg
	err error
}

// openWatch creates a consumer reading the bucket from its first message,
// retrying until ctx ends. The bucket keeps one message per key (History
// 1), so that is reading every key's last value, then every change.
func (g *Group) openWatch(ctx context.Context) (*groupWatch, error) {
	cfg := natsjs.ConsumerConfig{
		Description:       "edgetables group watch of " + g.node,
		DeliverPolicy:     natsjs.DeliverAllPolicy,
		AckPolicy:         natsjs.AckNonePolicy,
		FilterSubject:     kvSubject(g.bucket, ">"),
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	for attempt := 1; ; attempt++ {
		w := &groupWatch{
			events:     make(chan watchEvent, 64),
			done:       make(chan struct{}),
			reconnects: g.js.Conn().Stats().Reconnects,
		}
		timeout := watchCreateTimeout
		if attempt == 1 {
			timeout = watchFirstCreateTimeout
		}
		var cons natsjs.Consumer
		var err error
		w.last, err = hedged(ctx, watchHedge, timeout, watchHedges, g.leaderLast)
		if err == nil {
			// The consumer is placed on one of the stream's servers at
			// random, possibly one that just died: hedged attempts.
			cons, err = createHedged(ctx, g.js, &g.drops, g.stream, "edgetables_watch_", cfg)
		}
		if err == nil {
			w.cons, w.opened = cons, time.Now()
			if info := cons.CachedInfo(); info != nil {
				w.pending = info.NumPending
				if info.Cluster != nil {
					w.server = info.Cluster.Leader
				}
			}
			// The callbacks run on nats.go's goroutines; they hand over to
			// the watch's goroutine, or drop what comes after it stopped.
			w.cc, err = cons.Consume(func(m natsjs.Msg) {
				select {
				case w.events <- watchEvent{msg: m}:
				case <-w.done:
				}
			}, natsjs.PullExpiry(watchExpiry), natsjs.PullHeartbeat(watchHeartbeat),
				natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
					select {
					case w.events <- watchEvent{err: err}:
					case <-w.done:
					}
				}))
			if err == nil {
				return w, nil
			}
			g.deleteConsumer(cons)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("edgetables/jetstream: watch bucket %s: %w (last error: %w)", g.bucket, ctx.Err(), err)
		}
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return nil, fmt.Errorf("edgetables/jetstream: watch bucket %s: %w", g.bucket, err)
		}
		if attempt%20 == 0 {
			g.log.Warn("cannot create group watch consumer; retrying", "bucket", g.bucket, "attempts", attempt, "err", err)
		}
		t := time.NewTimer(watchRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// stop stops w's callbacks and waits (at most 1 s) until nats.go has
// stopped consuming.
func (w *groupWatch) stop() {
	close(w.done)
	w.cc.Stop()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-w.cc.Closed():
	case <-t.C:
	}
}

// deleteConsumer removes cons at once rather than after its inactivity
// threshold (best effort, at most 1 s).
func (g *Group) deleteConsumer(cons natsjs.Consumer) {
	if info := cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = g.js.DeleteConsumer(ctx, g.stream, info.Name)
		cancel()
	}
}

// watch runs Watch's goroutine: follow w, and start over on a new consumer
// whenever it fails, until ctx ends. While it starts over it reads the
// bucket key by key (pollKeys), so that a new assignment reaches this node
// even while no consumer can be created.
func (g *Group) watch(ctx context.Context, w *groupWatch, out chan port.GroupView) {
	defer close(out)
	defer g.drops.Wait() // the deletions of hedged attempts' consumers
	var base *port.GroupView
	for {
		last, err := g.follow(ctx, w, out)
		if last != nil {
			base = last
		}
		w.stop()
		if ctx.Err() != nil {
			g.deleteConsumer(w.cons)
			return
		}
		g.log.Info("group watch starts over", "bucket", g.bucket, "reason", err)
		// The old consumer is usually gone with its server; if not, its
		// inactivity threshold removes it.
		if w = g.reopen(ctx, base, out); w == nil {
			return
		}
	}
}

// reopen opens a new watch, retrying until ctx ends (nil then), and
// meanwhile sends views read key by key from base, if any (pollKeys).
func (g *Group) reopen(ctx context.Context, base *port.GroupView, out chan port.GroupView) *groupWatch {
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		if base != nil {
			g.pollKeys(pctx, *base, out)
		}
	}()
	defer func() {
		stopPoll() // out has one sender at a time: follow waits for the poll
		<-polled
	}()
	for {
		w, err := g.openWatch(ctx)
		if err == nil {
			return w
		}
		if ctx.Err() != nil {
			return nil
		}
		g.log.Error("cannot watch group bucket", "bucket", g.bucket, "err", err)
		t := time.NewTimer(watchFailWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// pollKeys sends views read key by key until ctx ends, every keyPollEvery
// while anything changed: base (the last complete view of the watch) with
// the current assignment, leader and leases of base's members read
// directly from the bucket. The bucket allows direct gets, which any of its
// replicas answers: no consumer is created and JetStream's meta leader is
// not involved, so this works while the watch cannot start over (after the
// death of the server that led the meta group, until a new one is elected:
// seconds). Such a view is Partial: members that joined after base are
// missing from it.
func (g *Group) pollKeys(ctx context.Context, base port.GroupView, out chan port.GroupView) {
	t := time.NewTicker(keyPollEvery)
	defer t.Stop()
	var sent []uint64 // the revisions of the last view sent, 0 for a removed key
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, revs, err := g.readKeys(ctx, base)
		if err != nil {
			g.log.Debug("group bucket unreadable key by key", "bucket", g.bucket, "err", err)
			continue
		}
		if slices.Equal(revs, sent) {
			continue
		}
		sent = revs
		// A later read from a replica further behind keeps this
		// assignment (readKeys keeps base's if newer).
		base.Assignment, base.AssignmentRev = v.Assignment, v.AssignmentRev
		send(out, v)
	}
}

// readKeys returns base with its assignment, leader and members' leases
// read from the bucket, marked Partial, and the revisions read (0: removed),
// in the order assignment, leader, then base's members by name.
func (g *Group) readKeys(ctx context.Context, base port.GroupView) (port.GroupView, []uint64, error) {
	v := viewState{view: cloneView(base), raw: map[string][]byte{}}
	v.view.Partial = true
	keys := []string{groupAssignmentKey, groupLeaderKey}
	for _, node := range slices.Sorted(maps.Keys(base.Members)) {
		keys = append(keys, groupMemberPrefix+node)
	}
	revs := make([]uint64, 0, len(keys))
	for _, key := range keys {
		rctx, cancel := context.WithTimeout(ctx, keyPollTimeout)
		e, err := g.kv.Get(rctx, key)
		cancel()
		switch {
		case errors.Is(err, natsjs.ErrKeyNotFound) || errors.Is(err, natsjs.ErrKeyDeleted):
			v.apply(key, nil, 0, true, g.log)
			revs = append(revs, 0)
		case err != nil:
			return port.GroupView{}, nil, fmt.Errorf("key %s: %w", key, err)
		case key == groupAssignmentKey && e.Revision() < base.AssignmentRev:
			// A replica behind the one base was read from: keep base's.
			revs = append(revs, base.AssignmentRev)
		default:
			v.apply(key, e.Value(), e.Revision(), false, g.log)
			revs = append(revs, e.Revision())
		}
	}
	return v.view, revs, nil
}

// follow builds a view from w's messages and sends it to out, once
// complete and after every change. It returns when ctx ends (nil error),
// or why w can no longer be trusted: any error of its consumer (missed
// heartbeats, the consumer gone or offline), the routes to its
// consumer's server closed (seen by WatchCrashes, sooner than missed
// heartbeats), a reconnection (messages may
// have been lost meanwhile), or a gap in the consumer's sequence; and the
// last complete view it sent (nil if none).
func (g *Group) follow(ctx context.Context, w *groupWatch, out chan port.GroupView) (*port.GroupView, error) {
	v := viewState{view: port.GroupView{Members: map[string]status.MemberState{}}, raw: map[string][]byte{}}
	// The consumer may read a replica still catching up (an R1 consumer
	// goes to any replica of the stream): its view is complete once it
	// has read what the stream's leader held when the watch began, not
	// when its replica has nothing more.
	var dseq, sseq uint64 // consumer and stream sequences of the last message
	complete := w.pending == 0 && g.readAll(ctx, 1, w.last)
	// last returns the view as sent: follow no longer changes it once it
	// returned.
	last := func() *port.GroupView {
		if !complete {
			return nil
		}
		return &v.view
	}
	if complete {
		send(out, v.view)
	}
	prefix := kvSubject(g.bucket, "")
	poll := time.NewTicker(watchPoll)
	defer poll.Stop()
	for {
		var ev watchEvent
		select {
		case <-ctx.Done():
			return last(), nil
		case <-g.gone.changed():
			if w.server != "" && g.gone.since(w.server, w.opened) {
				return last(), fmt.Errorf("the routes to its consumer's server %s closed", w.server)
			}
			continue
		case <-poll.C:
			if n := g.js.Conn().Stats().Reconnects; n != w.reconnects {
				return last(), errors.New("connection reconnected")
			}
			if !complete && g.readAll(ctx, sseq+1, w.last) {
				complete = true
				send(out, v.view)
			}
			continue
		case ev = <-w.events:
		}
		if ev.err != nil {
			return last(), ev.err
		}
		md, err := ev.msg.Metadata()
		if err != nil {
			return last(), err
		}
		if md.Sequence.Consumer != dseq+1 {
			return last(), fmt.Errorf("%w: consumer sequence %d after %d", errWatchGap, md.Sequence.Consumer, dseq)
		}
		dseq, sseq = md.Sequence.Consumer, md.Sequence.Stream
		key, ok := strings.CutPrefix(ev.msg.Subject(), prefix)
		if !ok {
			continue
		}
		changed := v.apply(key, ev.msg.Data(), md.Sequence.Stream, kvRemoved(ev.msg.Headers()), g.log)
		if !complete && md.NumPending == 0 && g.readAll(ctx, sseq+1, w.last) {
			complete, changed = true, true
		}
		if complete && changed {
			send(out, v.view)
		}
	}
}

// leaderLast returns the bucket stream's last sequence as its leader knows
// it (while the stream elects a leader, as a replica does: the watch would
// read that replica's content anyway). A replica's answer under a known
// leader's name is refused (see streamInfo).
func (g *Group) leaderLast(ctx context.Context) (uint64, error) {
	info, err := streamInfo(ctx, g.js, g.stream, "")
	if errors.Is(err, ErrLeaderless) && info != nil && info.Cluster.Leader == "" {
		return info.State.LastSeq, nil
	}
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: state of bucket %s: %w", g.bucket, err)
	}
	return info.State.LastSeq, nil
}

// readAll reports whether a watch that has read the bucket up to next-1
// has read everything up to last: next is beyond it, or the stream's leader
// holds no message from next to last (they were removed). A failed request
// reports false; the watch asks again at its next message or poll.
func (g *Group) readAll(ctx context.Context, next, last uint64) bool {
	if next > last {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, watchCreateTimeout)
	defer cancel()
	st, err := g.js.Stream(ctx, g.stream)
	if err != nil {
		return false
	}
	msg, err := st.GetMsg(ctx, next, natsjs.WithGetMsgSubject(kvSubject(g.bucket, ">")))
	if errors.Is(err, natsjs.ErrMsgNotFound) {
		return true
	}
	return err == nil && msg.Sequence > last
}

// send puts a copy of v in out, replacing an unread older view. The caller
// is out's only sender, so the send never blocks.
func send(out chan port.GroupView, v port.GroupView) {
	select {
	case <-out:
	default:
	}
	out <- cloneView(v)
}

// kvRemoved reports whether a bucket message with headers h marks its key
// removed: a delete or purge (KV-Operation), or a marker the server wrote
// when the key's TTL ran out (Nats-Marker-Reason).
func kvRemoved(h nats.Header) bool {
	return h.Get(kvOperationHeader) != "" || h.Get(natsjs.MarkerReasonHeader) != ""
}

// viewState is a view being built from the bucket's messages, with the raw
// values of the members to recognize renewals that change nothing.
type viewState struct {
	view port.GroupView
	raw  map[string][]byte
}

// apply applies the message of key at revision rev (value, or removed) and
// reports whether the view changed.
func (v *viewState) apply(key string, value []byte, rev uint64, removed bool, log *slog.Logger) bool {
	switch {
	case key == groupLeaderKey:
		leader := string(value)
		if removed {
			leader = ""
		}
		if leader == v.view.Leader {
			return false
		}
		v.view.Leader = leader
	case key == groupAssignmentKey:
		if removed {
			if v.view.AssignmentRev == 0 {
				return false
			}
			v.view.Assignment, v.view.AssignmentRev = assign.Assignment{}, 0
			return true
		}
		a, err := DecodeAssignment(value)
		if err != nil {
			// Keep the revision so the leader can replace it.
			log.Error("undecodable assignment in group bucket", "revision", rev, "err", err)
			a = assign.Assignment{}
		}
		v.view.Assignment, v.view.AssignmentRev = a, rev
	case strings.HasPrefix(key, groupMemberPrefix):
		node := key[len(groupMemberPrefix):]
		if removed {
			if _, ok := v.view.Members[node]; !ok {
				return false
			}
			delete(v.view.Members, node)
			delete(v.raw, node)
			return true
		}
		if old, ok := v.raw[node]; ok && string(old) == string(value) {
			return false
		}
		st, err := DecodeMemberState(value)
		if err != nil {
			// Still a live member; its state is unknown.
			log.Error("undecodable member state in group bucket", "key", key, "revision", rev, "err", err)
			st = status.MemberState{}
		}
		st.Node = node
		v.view.Members[node] = st
		v.raw[node] = value
	default:
		return false
	}
	return true
}

// cloneView returns a deep copy of v, so readers may keep and modify views.
func cloneView(v port.GroupView) port.GroupView {
	c := v
	c.Members = make(map[string]status.MemberState, len(v.Members))
	for n, st := range v.Members {
		st.Actives = slices.Clone(st.Actives)
		st.Standbys = slices.Clone(st.Standbys)
		st.Positions = maps.Clone(st.Positions)
		c.Members[n] = st
	}
	c.Assignment.Actives = slices.Clone(v.Assignment.Actives)
	if v.Assignment.Standbys != nil {
		c.Assignment.Standbys = make([][]string, len(v.Assignment.Standbys))
		for p, s := range v.Assignment.Standbys {
			c.Assignment.Standbys[p] = slices.Clone(s)
		}
	}
	return c
}
