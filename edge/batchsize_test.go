package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// wideConfig returns the exactly-once config of a node whose agent writes,
// for an event on fan.<n>, the keys "0" to "<n-1>" of table wide, in one
// partition.
func wideConfig(t *testing.T) Config {
	cfg := testConfig(t, t.TempDir())
	cfg.ExactlyOnce = true
	cfg.Partitions = 1 // every key in the event's partition
	wide := manager.NewTable(manager.TableConfig[string, int64]{Name: "wide", Keys: codec.String{}, Values: codec.Int64{}})
	cfg.Tables = []manager.Collection{wide}
	cfg.Agents = []manager.Agent{{
		Name: "fan", Subjects: []string{"fan.*"},
		Key: func(*manager.Event) ([]byte, error) { return []byte("one"), nil },
		Process: func(e *manager.Event) error {
			n, err := strconv.Atoi(e.Token(2))
			if err != nil {
				return err
			}
			for i := range n {
				if err := wide.Set(e, strconv.Itoa(i), 1); err != nil {
					return err
				}
			}
			return nil
		},
	}}
	return cfg
}

// waitDeadLetters waits until agent has sent want events to the
// dead-letter subject.
func waitDeadLetters(t *testing.T, n *Node, agent string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for n.Manager().Status().DeadLetters[agent] != want {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters of %s = %d; want %d", agent, n.Manager().Status().DeadLetters[agent], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStandaloneCommitsLargeBatches: a standalone exactly-once node, the
// only writer of its embedded server, commits as many records at once as
// that server's max_batch_size allows: an event that writes 3,000 keys, more
// than a server at the default 1,000 takes in one atomic batch, is
// committed, not dead-lettered.
func TestStandaloneCommitsLargeBatches(t *testing.T) {
	n, stop := runNode(t, wideConfig(t))
	defer stop()
	if got := n.changelog.MaxBatch(); got != jetstream.EmbeddedMaxAtomicBatch {
		t.Fatalf("changelog MaxBatch = %d, want %d", got, jetstream.EmbeddedMaxAtomicBatch)
	}
	publish(t, n, "fan.3000", "{}")
	publish(t, n, "fan.1", "{}")
	waitValue(t, n, "wide", "2999", "1")
	waitValue(t, n, "wide", "0", "1")
	if got := n.Manager().Status().DeadLetters["fan"]; got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

// TestExternalNATSKeepsDefaultBatches: a node on external NATS
// (--nats-url) keeps the servers' default atomic batch size, whatever the
// server's own limit might be: a node of an older edgetables, or a server
// left at the default, may lead its streams. Here the server is at the
// default 1,000: an event writing 3,000 keys can never be committed
// exactly once and goes to the dead-letter subject; the next event, of 500
// keys, is committed.
func TestExternalNATSKeepsDefaultBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "ext", Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		MaxAtomicBatch: jetstream.MaxAtomicBatch, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	cfg := wideConfig(t)
	cfg.NATSURLs = []string{srv.ClientURL()}
	n, stop := runNode(t, cfg)
	defer stop()
	if got := n.changelog.MaxBatch(); got != jetstream.MaxAtomicBatch {
		t.Fatalf("changelog MaxBatch = %d, want %d", got, jetstream.MaxAtomicBatch)
	}
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subj := range []string{"fan.3000", "fan.500"} {
		if _, err := nc.Request(subj, []byte("{}"), 5*time.Second); err != nil {
			t.Fatal(fmt.Errorf("publish %s: %w", subj, err))
		}
	}
	waitValue(t, n, "wide", "499", "1")
	waitDeadLetters(t, n, "fan", 1)
	if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/wide/keys/2999"); code != 404 {
		t.Errorf("wide/2999 = %d %v; want 404 (the 3,000-key event was dead-lettered)", code, body)
	}
}
