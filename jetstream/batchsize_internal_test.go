package jetstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

// TestServerRefusesLargeBatch: a batch the server refuses as larger than
// its max_batch_size (its limit fell after the changelog learned it: the
// stream's leader moved to a server left at the default) fails the Append
// with ErrBatchTooLarge, not as a fence, and stores nothing; the
// partition's next, smaller commit goes through at the same position.
func TestServerRefusesLargeBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := embeddedJetStream(t, ctx, ServerConfig{Name: "refuse", MaxAtomicBatch: MaxAtomicBatch})
	cl, err := NewChangelog(ctx, js, ChangelogConfig{App: "refuse", Partitions: 1, Atomic: true})
	if err != nil {
		t.Fatal(err)
	}
	recs := func(n int) []port.Record {
		out := make([]port.Record, n)
		for i := range out {
			out[i] = port.Record{Table: "t", Key: []byte{byte(i >> 8), byte(i)}, Value: []byte("v")}
		}
		return out
	}
	last, err := cl.Append(ctx, 0, 0, recs(10), port.CommitMarker{SourceSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	cl.maxBatch = 3 * MaxAtomicBatch // as learned from an earlier leader
	_, err = cl.Append(ctx, 0, last, recs(2*MaxAtomicBatch), port.CommitMarker{SourceSeq: 2})
	if !errors.Is(err, ErrBatchTooLarge) || errors.Is(err, port.ErrFenced) {
		t.Fatalf("Append of a batch the server refuses = %v; want ErrBatchTooLarge, not fenced", err)
	}
	if st, err := cl.State(ctx, 0); err != nil || st.Last != last {
		t.Fatalf("log after the refused batch: %+v, %v; want it to end at %d", st, err, last)
	}
	if got, err := cl.Append(ctx, 0, last, recs(MaxAtomicBatch-1), port.CommitMarker{SourceSeq: 2}); err != nil || got != last+MaxAtomicBatch {
		t.Fatalf("next Append = %d, %v; want %d", got, err, last+MaxAtomicBatch)
	}
}

// TestServerMaxAtomicBatch: an embedded server's max_batch_size is
// ServerConfig.MaxAtomicBatch, else a max_batch_size of its config file,
// else EmbeddedMaxAtomicBatch.
func TestServerMaxAtomicBatch(t *testing.T) {
	withLimit := filepath.Join(t.TempDir(), "limit.conf")
	if err := os.WriteFile(withLimit, []byte("jetstream {\n  limits {\n    batch {\n      max_msgs: 500\n    }\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		maxBatch   int
		configFile string
		want       int
	}{
		{"default", 0, "", EmbeddedMaxAtomicBatch},
		{"config", 2000, "", 2000},
		{"config file", 0, withLimit, 500},
		{"config over config file", 3000, withLimit, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ServerConfig{StoreDir: t.TempDir(), MaxAtomicBatch: tc.maxBatch, Security: Security{ConfigFile: tc.configFile}}
			opts, _, err := serverOptions(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := opts.JetStreamLimits.MaxBatchSize; got != tc.want {
				t.Errorf("max_batch_size = %d, want %d", got, tc.want)
			}
		})
	}
	if _, _, err := serverOptions(&ServerConfig{StoreDir: t.TempDir(), MaxAtomicBatch: -1}); err == nil {
		t.Error("MaxAtomicBatch -1: no error")
	}
}

// embeddedJetStream starts an embedded server with cfg (a loopback port, a
// temporary store and a quiet logger filled in) for t, and connects to it.
func embeddedJetStream(t *testing.T, ctx context.Context, cfg ServerConfig) natsjs.JetStream {
	t.Helper()
	cfg.Listen, cfg.StoreDir = "127.0.0.1:0", t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := StartServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
