package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func TestFromLeader(t *testing.T) {
	peer := func(name string) *natsjs.PeerInfo { return &natsjs.PeerInfo{Name: name, Current: true} }
	tests := []struct {
		name string
		ci   *natsjs.ClusterInfo
		want bool
	}{
		{"not clustered", nil, true},
		{"unreplicated", &natsjs.ClusterInfo{Leader: "n1"}, true},
		{"the leader", &natsjs.ClusterInfo{Leader: "n1", Replicas: []*natsjs.PeerInfo{peer("n2"), peer("n3")}}, true},
		{"a replica under the leader's name", &natsjs.ClusterInfo{Leader: "n1", Replicas: []*natsjs.PeerInfo{peer("n1"), peer("n2")}}, false},
		{"leaderless", &natsjs.ClusterInfo{Replicas: []*natsjs.PeerInfo{peer("n2"), peer("n3")}}, false},
		{"nil replica entry", &natsjs.ClusterInfo{Leader: "n1", Replicas: []*natsjs.PeerInfo{nil, peer("n2")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromLeader(&natsjs.StreamInfo{Cluster: tt.ci}); got != tt.want {
				t.Errorf("fromLeader = %v, want %v", got, tt.want)
			}
		})
	}
}

// infoAnswer is a stream info answer as server name answers it for a
// stream led by leader, with last as its last sequence.
func infoAnswer(t *testing.T, name, leader string, last uint64) []byte {
	t.Helper()
	ci := &natsjs.ClusterInfo{Name: "c", Leader: leader}
	for _, p := range []string{"n1", "n2", "n3"} {
		if p != name {
			ci.Replicas = append(ci.Replicas, &natsjs.PeerInfo{Name: p, Current: true})
		}
	}
	b, err := json.Marshal(struct {
		Type string `json:"type"`
		*natsjs.StreamInfo
	}{"io.nats.jetstream.api.v1.stream_info_response", &natsjs.StreamInfo{
		Config:  natsjs.StreamConfig{Name: "log"},
		Created: time.Unix(1700000000, 0),
		State:   natsjs.StreamState{Msgs: last, FirstSeq: 1, LastSeq: last},
		Cluster: ci,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStateTakesTheLeadersAnswer: a replica of a stream may answer a
// stream info request too (nats-server lets one answer for a few seconds
// after its server restarts), with its own state, which lags while it
// catches up, and its answer may come first. State must take the
// leader's: a restarted node's global replica recovered to a last
// sequence one short of the log's, and a Sync returned before the write
// it missed (TestGlobalTableConvergence under load, 2 of 30 runs).
func TestStateTakesTheLeadersAnswer(t *testing.T) {
	nc, js := plainServer(t)
	defer func(prev []time.Duration) { stateAttempts = prev }(stateAttempts)
	stateAttempts = []time.Duration{time.Second}

	// n2, restarted, answers first with 140; the leader n1 then with 141.
	var replicaOnly atomic.Bool
	sub, err := nc.Subscribe("$JS.API.STREAM.INFO.log", func(m *nats.Msg) {
		_ = m.Respond(infoAnswer(t, "n2", "n1", 140))
		if !replicaOnly.Load() {
			time.Sleep(20 * time.Millisecond)
			_ = m.Respond(infoAnswer(t, "n1", "n1", 141))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cl := &Changelog{js: js, streams: []string{"log"}}
	src := &Source{js: js, stream: "log"}
	ctx := context.Background()
	if st, err := cl.State(ctx, 0); err != nil || st.Last != 141 {
		t.Fatalf("Changelog.State = %+v, %v; want last 141, the leader's", st, err)
	}
	if st, err := src.State(ctx); err != nil || st.Last != 141 {
		t.Fatalf("Source.State = %+v, %v; want last 141, the leader's", st, err)
	}

	// Only the replica answers: no state rather than its own.
	replicaOnly.Store(true)
	if st, err := cl.State(ctx, 0); !errors.Is(err, ErrLeaderless) {
		t.Fatalf("Changelog.State with only a replica answering = %+v, %v; want ErrLeaderless", st, err)
	}
}

// TestStateAsksAgainAfterAReplica: a client most often gets one answer of
// a request, the first (nats-server v2.15.2, for 10 s after a replica's
// server starts); when it is a replica's, State must ask again rather
// than wait for the leader's, which is dropped. Here the first two
// requests get only the replica's answer, and State has two attempts
// (each sending one request when it does not ask again): it must return
// the leader's answer to a later request.
func TestStateAsksAgainAfterAReplica(t *testing.T) {
	nc, js := plainServer(t)
	defer func(prev []time.Duration) { stateAttempts = prev }(stateAttempts)
	stateAttempts = []time.Duration{time.Second, time.Second}

	var requests atomic.Int32
	sub, err := nc.Subscribe("$JS.API.STREAM.INFO.log", func(m *nats.Msg) {
		if requests.Add(1) <= 2 {
			_ = m.Respond(infoAnswer(t, "n2", "n1", 140))
			return
		}
		_ = m.Respond(infoAnswer(t, "n1", "n1", 141))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cl := &Changelog{js: js, streams: []string{"log"}}
	start := time.Now()
	st, err := cl.State(context.Background(), 0)
	if err != nil || st.Last != 141 {
		t.Fatalf("Changelog.State = %+v, %v; want last 141, the leader's", st, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("State took %v", took)
	}
	if n := requests.Load(); n < 3 {
		t.Fatalf("%d requests, want at least 3", n)
	}
}

// TestStateConfirmsAReplica: when only a replica answers stream info (its
// own server's, say, which most often answers first for 10 s after that
// server starts), State takes the replica's answer only if the leader's
// answer to a message get of the stream's last message has the replica's
// last sequence.
func TestStateConfirmsAReplica(t *testing.T) {
	nc, js := plainServer(t)
	defer func(prev []time.Duration) { stateAttempts = prev }(stateAttempts)
	stateAttempts = []time.Duration{time.Second}

	info, err := nc.Subscribe("$JS.API.STREAM.INFO.log", func(m *nats.Msg) {
		_ = m.Respond(infoAnswer(t, "n2", "n1", 140))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer info.Unsubscribe()
	cl := &Changelog{js: js, streams: []string{"log"}}
	for _, tc := range []struct {
		name    string
		answer  string // the leader's answer to the message get; empty: none
		confirm bool
	}{
		{"the leader's last message is the replica's last", `{"message":{"subject":"log.c","seq":140}}`, true},
		{"the leader has one more", `{"message":{"subject":"log.c","seq":141}}`, false},
		{"the last sequence was removed", `{"error":{"code":404,"err_code":10037,"description":"no message found"}}`, false},
		{"no leader answers", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.answer != "" {
				get, err := nc.Subscribe("$JS.API.STREAM.MSG.GET.log", func(m *nats.Msg) {
					var req msgGetRequest
					if json.Unmarshal(m.Data, &req) != nil || req.LastBySubject != ">" {
						t.Errorf("message get %s, want the last message of the stream", m.Data)
					}
					_ = m.Respond([]byte(tc.answer))
				})
				if err != nil {
					t.Fatal(err)
				}
				defer get.Unsubscribe()
			}
			start := time.Now()
			st, err := cl.State(context.Background(), 0)
			switch {
			case tc.confirm && (err != nil || st.Last != 140):
				t.Fatalf("State = %+v, %v; want the confirmed replica's last 140", st, err)
			case tc.confirm && time.Since(start) > time.Second:
				t.Fatalf("State took %v", time.Since(start))
			case !tc.confirm && !errors.Is(err, ErrLeaderless):
				t.Fatalf("State = %+v, %v; want ErrLeaderless", st, err)
			}
		})
	}
}

// TestMetaLoadAsksTheLeader: a KV get is a direct get, which any replica
// of the bucket answers, one that restarted a moment ago and has not
// caught up included: "no such key"; and a meta leader elected a moment
// ago may say "no such stream" before the stream's leader answers.
// Meta.Load must read the stream leader's copy (a restarted node stopped with "the app has no metadata",
// TestChangelogLeadersOffOwners and TestWindowCloseOnceAcrossFailover
// under load).
func TestMetaLoadAsksTheLeader(t *testing.T) {
	nc, js := plainServer(t)
	doc, err := EncodeAppMeta(AppMeta{Version: MetaVersion, App: "a", Partitions: 6})
	if err != nil {
		t.Fatal(err)
	}
	stream := "KV_" + MetaBucket("a")
	respond := func(subject string, answer func(m *nats.Msg)) {
		sub, err := nc.Subscribe(subject, answer)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	// The lagging replica answers stream info and direct gets; the leader
	// answers message gets.
	respond("$JS.API.STREAM.INFO."+stream, func(m *nats.Msg) {
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			*natsjs.StreamInfo
		}{"io.nats.jetstream.api.v1.stream_info_response", &natsjs.StreamInfo{
			Config:  natsjs.StreamConfig{Name: stream, Subjects: []string{"$KV." + MetaBucket("a") + ".>"}, AllowDirect: true, MaxMsgsPerSubject: 5},
			Created: time.Unix(1700000000, 0),
			Cluster: &natsjs.ClusterInfo{Leader: "n1", Replicas: []*natsjs.PeerInfo{{Name: "n1", Current: true}}},
		}})
		_ = m.Respond(b)
	})
	respond("$JS.API.DIRECT.GET."+stream+".>", func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Header: nats.Header{"Status": []string{"404"}, "Description": []string{"Message Not Found"}}})
	})
	respond("$JS.API.DIRECT.GET."+stream, func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Header: nats.Header{"Status": []string{"404"}, "Description": []string{"Message Not Found"}}})
	})
	respond("$JS.API.STREAM.MSG.GET."+stream, func(m *nats.Msg) {
		// A meta leader elected a moment ago, without the stream's
		// assignment yet, says there is no such stream; then the
		// stream's leader answers.
		_ = m.Respond([]byte(`{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","error":{"code":404,"err_code":10059,"description":"stream not found"}}`))
		time.Sleep(20 * time.Millisecond)
		b, _ := json.Marshal(map[string]any{"type": "io.nats.jetstream.api.v1.stream_msg_get_response",
			"message": map[string]any{"subject": "$KV." + MetaBucket("a") + ".app", "seq": 7, "data": doc, "time": time.Now()}})
		_ = m.Respond(b)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, rev, err := (&Meta{js: js, app: "a", bucket: MetaBucket("a")}).Load(ctx)
	if err != nil || got.Partitions != 6 || rev != 7 {
		t.Fatalf("Load = %+v, %d, %v; want the leader's document at revision 7", got, rev, err)
	}
}

// plainServer starts a NATS server without JetStream, on which a test's
// responders play the JetStream API, and connects to it.
func plainServer(t *testing.T) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	return testServer(t, &server.Options{})
}

// testServer starts a server with opts on a random loopback port for t, and
// connects to it.
func testServer(t *testing.T, opts *server.Options) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestMetaLoadAfterRefusedCreate: when the create of the document was
// refused because it exists, a "not found" read (a stream leader elected
// a moment ago; seen right after a 3-node cluster's first start) is asked
// again, not taken for "no metadata" (the node stopped).
func TestMetaLoadAfterRefusedCreate(t *testing.T) {
	nc, js := plainServer(t)
	doc, err := EncodeAppMeta(AppMeta{Version: MetaVersion, App: "a", Partitions: 6})
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	sub, err := nc.Subscribe("$JS.API.STREAM.MSG.GET.KV_"+MetaBucket("a"), func(m *nats.Msg) {
		if asked.Add(1) <= 2 {
			_ = m.Respond([]byte(`{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","error":{"code":404,"err_code":10037,"description":"no message found"}}`))
			return
		}
		b, _ := json.Marshal(map[string]any{"message": map[string]any{"subject": "$KV." + MetaBucket("a") + ".app", "seq": 3, "data": doc, "time": time.Now()}})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := &Meta{js: js, app: "a", bucket: MetaBucket("a")}
	got, rev, err := m.load(ctx, true)
	if err != nil || got.Partitions != 6 || rev != 3 {
		t.Fatalf("load after a refused create = %+v, %d, %v; want the document at revision 3", got, rev, err)
	}
	asked.Store(0)
	if _, _, err := m.Load(ctx); !errors.Is(err, ErrNoMeta) {
		t.Fatalf("Load with the leader saying not found = %v; want ErrNoMeta", err)
	}
}

// TestLastMessageOfStream checks, on a real server, the fact
// leaderConfirms relies on: a message get of the last message on ">"
// returns the message at the stream's last sequence, and "not found" once
// that message is removed, even though older ones remain.
func TestLastMessageOfStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := embeddedJetStream(t, ctx, ServerConfig{Name: "last"})
	st, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "last", Subjects: []string{"last.>"}, Storage: natsjs.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaderLastMsg(ctx, js, "last", ">"); !errors.Is(err, natsjs.ErrMsgNotFound) {
		t.Fatalf("last message of an empty stream: %v, want ErrMsgNotFound", err)
	}
	for i, subject := range []string{"last.a", "last.b", "last.a"} {
		if _, err := js.Publish(ctx, subject, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := leaderLastMsg(ctx, js, "last", ">")
	if err != nil || m.Sequence != 3 || m.Subject != "last.a" {
		t.Fatalf("last message = %+v, %v; want sequence 3 on last.a", m, err)
	}
	if err := st.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if m, err := leaderLastMsg(ctx, js, "last", ">"); !errors.Is(err, natsjs.ErrMsgNotFound) {
		t.Fatalf("last message after removing the last = %+v, %v; want ErrMsgNotFound", m, err)
	}
}
