package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Stream info requests go to every server of the cluster, and more than
// one may answer. The stream's leader does, and so does, for up to 10 s
// after the group's raft node is created on its server (a new stream, or
// the server's start), the replica that is the group's preferred leader
// when another leads (nats-server answers as "a new group" then), with its
// own state, which lags while it catches up, under the leader's name. A
// client that takes the first answer, as nats.go's Stream and Info do, may
// get that replica's: a last sequence below messages the stream
// acknowledged long ago. streamInfo waits for the leader's answer instead,
// and asks again meanwhile: most often only the first answer reaches the
// client (see gather).

// staleWait is how long streamInfo waits for the leader's answer once a
// replica's came; notFoundWait how long a read waits for a better answer
// once an error or "not found" came (usually the truth: a key never
// written, a stream deleted; so short).
const (
	staleWait    = 2 * time.Second
	notFoundWait = 300 * time.Millisecond
)

// gatherResend is the wait before gather first sends its request again
// while only answers it cannot take came; each later wait is twice the one
// before, up to gatherResendMax. Every server of the cluster queues every
// request, so a failover's reads asking every 50 ms would crowd the queues
// they wait on.
const (
	gatherResend    = 50 * time.Millisecond
	gatherResendMax = 400 * time.Millisecond
)

// defaultInfoTimeout bounds a stream info request whose context has no
// deadline.
const defaultInfoTimeout = 5 * time.Second

// streamInfoRequest is the body of a stream info request with a subject
// filter (nats-server's JSApiStreamInfoRequest).
type streamInfoRequest struct {
	SubjectsFilter string `json:"subjects_filter,omitempty"`
}

// streamInfoReply is a stream info answer (nats-server's
// JSApiStreamInfoResponse).
type streamInfoReply struct {
	Error *natsjs.APIError `json:"error,omitempty"`
	*natsjs.StreamInfo
}

// fromLeader reports whether info was sent by the stream's leader (or by
// the server of an unreplicated stream): a server lists the group's other
// peers as replicas, so an answer that lists the leader among them came
// from another replica. A leaderless answer is not the leader's either.
func fromLeader(info *natsjs.StreamInfo) bool {
	ci := info.Cluster
	if ci == nil {
		return true
	}
	if ci.Leader == "" {
		return false
	}
	for _, r := range ci.Replicas {
		if r != nil && r.Name == ci.Leader {
			return false
		}
	}
	return true
}

// apiSubjectOf is subject under the JetStream API prefix of js (its
// domain's, for a context made for another domain).
func apiSubjectOf(js natsjs.JetStream, subject string) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return apiPrefix(o.Domain) + "." + subject
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "." + subject
	}
	return "$JS.API." + subject
}

// streamInfo returns stream's info as its leader answers it, with the
// message counts of the subjects matching filter when filter is set (one
// page: enough for the few subjects its callers ask about). It waits for
// the leader's answer until ctx ends (at most defaultInfoTimeout without
// a deadline), and at most staleWait once a replica's came (notFoundWait
// after an error); it fails with an error wrapping ErrLeaderless when only
// replicas answered (returning the last replica's answer with it), and
// with natsjs.ErrStreamNotFound when the stream does not exist.
func streamInfo(ctx context.Context, js natsjs.JetStream, stream, filter string) (*natsjs.StreamInfo, error) {
	return streamInfoWaiting(ctx, js, stream, filter, staleWait)
}

// streamInfoWaiting is streamInfo waiting stale instead of staleWait for
// the leader's answer once a replica's came.
func streamInfoWaiting(ctx context.Context, js natsjs.JetStream, stream, filter string, stale time.Duration) (*natsjs.StreamInfo, error) {
	var body []byte
	if filter != "" {
		body, _ = json.Marshal(streamInfoRequest{SubjectsFilter: filter})
	}
	var reply streamInfoReply
	// The leader's answer is final. After a replica's, the leader's comes
	// soon; after an error ("stream not found" from a meta leader elected
	// a moment ago, or the truth), a better one would come at once.
	msg, final, err := gather(ctx, js, "STREAM.INFO."+stream, body, func(msg *nats.Msg) verdict {
		var r streamInfoReply
		switch {
		case json.Unmarshal(msg.Data, &r) != nil || r.Error != nil || r.StreamInfo == nil:
			return verdict{settle: notFoundWait}
		case fromLeader(r.StreamInfo):
			return verdict{final: true}
		}
		return verdict{settle: stale, again: true}
	})
	if err != nil {
		return nil, fmt.Errorf("stream info of %s: %w", stream, err)
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("stream info of %s: answer %.200q: %w", stream, msg.Data, err)
	}
	switch {
	case reply.Error != nil && reply.Error.ErrorCode == natsjs.JSErrCodeStreamNotFound:
		return nil, fmt.Errorf("stream info of %s: %w", stream, natsjs.ErrStreamNotFound)
	case reply.Error != nil:
		return nil, fmt.Errorf("stream info of %s: %w", stream, reply.Error)
	case reply.StreamInfo == nil:
		return nil, fmt.Errorf("stream info of %s: %w", stream, natsjs.ErrInvalidJetStreamResponse)
	case !final:
		leader := ""
		if reply.Cluster != nil {
			leader = reply.Cluster.Leader
		}
		return reply.StreamInfo, fmt.Errorf("%w: stream info of %s: only a replica answered (last sequence %d; leader %q)",
			ErrLeaderless, stream, reply.State.LastSeq, leader)
	}
	return reply.StreamInfo, nil
}

// verdict is what gather's judge makes of an answer.
type verdict struct {
	final  bool          // the answer to return
	settle time.Duration // else, how long to wait for a final one
	again  bool          // and whether to send the request again meanwhile
}

// gather sends a JetStream API request (subject under the API prefix) and
// returns the first answer judge calls final, or, when another answer
// came but no final one within the settle time judge gave for it (counted
// from the first such answer, and before ctx ends), the last other answer
// with final false. Several servers may answer one request: a replica besides
// the stream's leader, or a meta leader elected a moment ago that has not
// applied the stream assignments yet ("stream not found"), and the first
// answer is not always the right one.
//
// Most often only one answer of a request reaches the client, the first
// (seen with nats-server v2.15.2: for 10 s after a server starts, its
// replicas answer stream info requests as "new groups"; a client of the
// restarted server got the leader's answer to 1 to 4 of about 18 requests
// per stream, one of another server to about half, the replica's to the
// rest). So once judge asks for it (again), gather sends the request
// again, after gatherResend and then less and less often, until a final
// answer comes, each a new race between the servers that answer. Without
// a deadline, ctx is bounded by defaultInfoTimeout.
func gather(ctx context.Context, js natsjs.JetStream, subject string, body []byte, judge func(*nats.Msg) verdict) (*nats.Msg, bool, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultInfoTimeout)
		defer cancel()
	}
	nc := js.Conn()
	inbox := nc.NewInbox()
	answers := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject = apiSubjectOf(js, subject)
	if err := nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, false, err
	}
	var (
		other  *nats.Msg
		settle <-chan time.Time // the time judge gave the first other answer
		resend <-chan time.Time // once judge asked for it
		rt     *time.Timer      // resend's
		wait   time.Duration    // until the next resend
	)
	for {
		select {
		case <-ctx.Done():
			switch {
			case other != nil:
				return other, false, nil
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				return nil, false, fmt.Errorf("%w: %w", nats.ErrTimeout, ctx.Err())
			}
			return nil, false, ctx.Err()
		case <-settle:
			return other, false, nil
		case <-resend:
			// A failed send leaves the answers of the earlier ones to come.
			_ = nc.PublishRequest(subject, inbox, body)
			wait = min(2*wait, gatherResendMax)
			rt.Reset(wait)
			continue
		case msg := <-answers:
			if msg.Header.Get("Status") == "503" {
				if other != nil {
					continue // a resend found no responders: keep what came
				}
				return nil, false, nats.ErrNoResponders
			}
			v := judge(msg)
			if v.final {
				return msg, true, nil
			}
			if settle == nil {
				st := time.NewTimer(v.settle)
				defer st.Stop()
				settle = st.C
			}
			if v.again && resend == nil {
				wait = gatherResend
				rt = time.NewTimer(wait)
				defer rt.Stop()
				resend = rt.C
			}
			other = msg
		}
	}
}

// msgGetRequest is the body of a (leader-answered) message get
// (nats-server's JSApiMsgGetRequest).
type msgGetRequest struct {
	LastBySubject string `json:"last_by_subj"`
}

// msgGetReply is a message get answer (nats-server's JSApiMsgGetResponse).
type msgGetReply struct {
	Error   *natsjs.APIError `json:"error,omitempty"`
	Message *struct {
		Subject  string `json:"subject"`
		Sequence uint64 `json:"seq"`
		Header   []byte `json:"hdrs,omitempty"`
		Data     []byte `json:"data,omitempty"`
	} `json:"message,omitempty"`
}

// leaderLastMsg returns the last message of stream on subject as the
// stream's leader holds it. KV buckets allow direct gets, which any
// replica answers, one still catching up included, and nats.go uses them
// for KV reads and for GetLastMsgForSubject; a message get (not direct) is
// answered by the leader alone. It fails with natsjs.ErrMsgNotFound when
// the subject has no message and natsjs.ErrStreamNotFound when the stream
// does not exist.
func leaderLastMsg(ctx context.Context, js natsjs.JetStream, stream, subject string) (*natsjs.RawStreamMsg, error) {
	body, _ := json.Marshal(msgGetRequest{LastBySubject: subject})
	// A message is final; "not found" may come from a meta leader that
	// has not applied the stream's assignment yet, before the stream
	// leader's message.
	msg, _, err := gather(ctx, js, "STREAM.MSG.GET."+stream, body, func(msg *nats.Msg) verdict {
		var r msgGetReply
		return verdict{final: json.Unmarshal(msg.Data, &r) == nil && r.Error == nil && r.Message != nil, settle: notFoundWait}
	})
	if err != nil {
		return nil, fmt.Errorf("last message of %s on %s: %w", stream, subject, err)
	}
	var reply msgGetReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("last message of %s on %s: answer %.200q: %w", stream, subject, msg.Data, err)
	}
	switch {
	case reply.Error != nil && reply.Error.ErrorCode == natsjs.JSErrCodeStreamNotFound:
		return nil, fmt.Errorf("last message of %s on %s: %w", stream, subject, natsjs.ErrStreamNotFound)
	case reply.Error != nil && reply.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound:
		return nil, fmt.Errorf("last message of %s on %s: %w", stream, subject, natsjs.ErrMsgNotFound)
	case reply.Error != nil:
		return nil, fmt.Errorf("last message of %s on %s: %w", stream, subject, reply.Error)
	case reply.Message == nil:
		return nil, fmt.Errorf("last message of %s on %s: %w", stream, subject, natsjs.ErrInvalidJetStreamResponse)
	}
	m := reply.Message
	out := &natsjs.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Data: m.Data}
	if len(m.Header) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(m.Header); err != nil {
			return nil, fmt.Errorf("last message of %s on %s: headers: %w", stream, subject, err)
		}
	}
	return out, nil
}

// confirmAfter is how long State waits for the leader's answer to a
// stream info request once a replica's came (asking again meanwhile), before
// it asks the leader to confirm the replica's (leaderConfirms); confirmWait
// bounds that message get.
const (
	confirmAfter = 200 * time.Millisecond
	confirmWait  = 500 * time.Millisecond
)

// leaderConfirms reports whether the stream's leader confirms the last
// sequence of info, a replica's answer to a stream info request (see
// streamInfo): whether the leader holds a message at that sequence and
// none after it. For 10 s after a server starts, its replicas answer stream
// info, and a replica's answer often reaches the client while the
// leader's does not (see gather); on a busy cluster, a promoted standby's
// State got only its own server's replica answer for 4 s. A message get of
// the stream's last message is answered by the leader alone (nats-server
// loads the message at its last sequence, "not found" when that one was
// removed, which confirms nothing). The replica's first sequence and
// epoch are then taken with its last: its epoch is the stream's creation,
// the same on every replica, and a replica with the leader's last
// sequence has stored and removed what the leader has, but for messages
// whose TTL expired on one server and not yet on another.
func (c *Changelog) leaderConfirms(ctx context.Context, p int, info *natsjs.StreamInfo) bool {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == "" || info.State.LastSeq == 0 {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, confirmWait)
	defer cancel()
	last, err := leaderLastMsg(cctx, c.js, c.streams[p], ">")
	return err == nil && last.Sequence == info.State.LastSeq
}
