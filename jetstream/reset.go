package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// PurgeTable removes every record of table from the changelog streams of
// partitions 0 to partitions-1 (the subjects <app>.changelog.<p>.<table>.>)
// and returns how many messages it removed. Commit markers and the other
// tables' records stay; a stream that does not exist is skipped. The
// streams' last sequences do not change, so their writers' fencing holds.
// A recovery must read a log's last message, so where the last message was
// one of the table's (a commit cut between its batches), the partition's
// last commit marker is appended again, unchanged (an empty one if it has
// none). It must run while nothing writes the changelogs: a record written
// during the purge may stay or go. Four requests per partition.
func PurgeTable(ctx context.Context, js natsjs.JetStream, app string, partitions int, table string) (uint64, error) {
	if err := ValidateApp(app); err != nil {
		return 0, err
	}
	if err := ValidateToken("table", table); err != nil {
		return 0, err
	}
	var total uint64
	for p := range partitions {
		last := func(ctx context.Context, st natsjs.Stream) (*nats.Msg, error) {
			msg := &nats.Msg{Subject: CommitSubject(app, p), Data: []byte(`{"source_seq":0}`)}
			m, err := st.GetLastMsgForSubject(ctx, msg.Subject)
			switch {
			case errors.Is(err, natsjs.ErrMsgNotFound):
			case err != nil:
				return nil, err
			default:
				msg.Data = m.Data
			}
			return msg, nil
		}
		n, err := purgeSubject(ctx, js, ChangelogStream(app, p), recordPrefix(app, p)+table+".>", last)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// PurgeGlobalTable removes every record of the global table from the
// stream <app>_global and returns how many messages it removed (0 when the
// stream does not exist). Where the last message was one of the table's, a
// tombstone of the table's empty key is appended, so that the stream still
// ends with a message (a replay must read it). As PurgeTable, it must run
// while nothing writes the table.
func PurgeGlobalTable(ctx context.Context, js natsjs.JetStream, app, table string) (uint64, error) {
	if err := ValidateApp(app); err != nil {
		return 0, err
	}
	if err := ValidateToken("table", table); err != nil {
		return 0, err
	}
	last := func(context.Context, natsjs.Stream) (*nats.Msg, error) {
		msg := nats.NewMsg(GlobalSubject(app, table, nil))
		msg.Header.Set(HeaderOp, OpDelete)
		return msg, nil
	}
	return purgeSubject(ctx, js, GlobalStream(app), globalPrefix(app)+table+".>", last)
}

// purgeSubject purges the messages of subject (a filter) from stream and
// returns how many went. If the stream then holds messages but not its
// last one, it appends last's message, expecting the stream's last
// sequence.
func purgeSubject(ctx context.Context, js natsjs.JetStream, stream, subject string,
	last func(context.Context, natsjs.Stream) (*nats.Msg, error)) (uint64, error) {
	var purged uint64
	err := retry(ctx, "purge "+subject+" from stream "+stream, func() error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		st, err := js.Stream(actx, stream)
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return apiAbsent(err)
		}
		before, err := st.Info(actx)
		if err != nil {
			return apiAbsent(err)
		}
		if err := st.Purge(actx, natsjs.WithPurgeSubject(subject)); err != nil {
			return apiAbsent(err)
		}
		after, err := st.Info(actx)
		if err != nil {
			return apiAbsent(err)
		}
		purged += before.State.Msgs - min(after.State.Msgs, before.State.Msgs)
		if after.State.Msgs == 0 {
			return nil
		}
		_, err = st.GetMsg(actx, after.State.LastSeq)
		if !errors.Is(err, natsjs.ErrMsgNotFound) {
			return apiAbsent(err)
		}
		msg, err := last(actx, st)
		if err != nil {
			return apiAbsent(err)
		}
		_, err = js.PublishMsg(actx, msg, natsjs.WithExpectStream(stream), natsjs.WithExpectLastSequence(after.State.LastSeq))
		return apiAbsent(err)
	})
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: purge %s from stream %s: %w", subject, stream, err)
	}
	return purged, nil
}

// Lease is a member's lease in an app's consumer group as stored: a member
// that runs renews it (a new revision) at least once per TTL; one that
// stopped without leaving keeps its last revision until the server removes
// the key when the TTL runs out (which a cluster that lost its quorum
// meanwhile may do only some time after it is back).
type Lease struct {
	// Node is the member's name.
	Node string
	// Revision is the stream sequence of the lease's last renewal.
	Revision uint64
	// TTL is the lease's time to live (its Nats-TTL); 0 when it has none.
	TTL time.Duration
}

// LiveMembers returns the leases of the members of app's consumer group
// that hold one (their key in <app>_group holds a value, not a removal
// marker), sorted by node; none when the bucket does not exist. One request
// plus one per member key. A lease listed here may belong to a node that
// has stopped: only one whose Revision moves within its TTL is renewed.
func LiveMembers(ctx context.Context, js natsjs.JetStream, app string) ([]Lease, error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	bucket := GroupBucket(app)
	prefix := kvSubject(bucket, groupMemberPrefix)
	var live []Lease
	err := retry(ctx, "list the members of "+bucket, func() error {
		live = live[:0]
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		st, err := js.Stream(actx, "KV_"+bucket)
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return apiAbsent(err)
		}
		info, err := st.Info(actx, natsjs.WithSubjectFilter(prefix+">"))
		if err != nil {
			return apiAbsent(err)
		}
		for subj := range info.State.Subjects {
			msg, err := st.GetLastMsgForSubject(actx, subj)
			if errors.Is(err, natsjs.ErrMsgNotFound) {
				continue // expired meanwhile
			}
			if err != nil {
				return apiAbsent(err)
			}
			if kvRemoved(msg.Header) {
				continue
			}
			l := Lease{Node: strings.TrimPrefix(subj, prefix), Revision: msg.Sequence}
			if ttl := msg.Header.Get(natsjs.MsgTTLHeader); ttl != "" {
				if d, err := parseMsgTTL(ttl); err == nil {
					l.TTL = d
				}
			}
			live = append(live, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: members of app %s: %w", app, err)
	}
	slices.SortFunc(live, func(a, b Lease) int { return strings.Compare(a.Node, b.Node) })
	return live, nil
}

// parseMsgTTL parses a Nats-TTL header: a Go duration or whole seconds.
func parseMsgTTL(v string) (time.Duration, error) {
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(secs) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// ChangelogPartitions returns the partition count the changelog streams of
// app were made for: one more than the highest p of the streams
// <app>_changelog_<p> that exist, or 0 when there are none. It tells the
// partition count of an app created before its metadata was recorded. One
// request per 256 streams on the server.
func ChangelogPartitions(ctx context.Context, js natsjs.JetStream, app string) (int, error) {
	if err := ValidateApp(app); err != nil {
		return 0, err
	}
	prefix := app + "_changelog_"
	var n int
	err := retry(ctx, "list the streams of "+app, func() error {
		n = 0
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		names := js.StreamNames(actx)
		for name := range names.Name() {
			rest, ok := strings.CutPrefix(name, prefix)
			if !ok {
				continue
			}
			p, err := strconv.Atoi(rest)
			if err != nil || p < 0 || strconv.Itoa(p) != rest {
				continue // another app's stream (its name goes on with '_')
			}
			n = max(n, p+1)
		}
		return apiAbsent(names.Err())
	})
	if err != nil {
		return 0, fmt.Errorf("edgetables/jetstream: changelog streams of app %s: %w", app, err)
	}
	return n, nil
}
