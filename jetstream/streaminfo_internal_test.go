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
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
