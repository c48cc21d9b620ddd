package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	edgebuiltin "github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// nodeName is the node name of every measured manager.
const nodeName = "bench-node"

// ports are an app's streams as edge.Node creates them.
type ports struct {
	changelog *jetstream.Changelog
	source    *jetstream.Source
	dlq       *jetstream.DeadLetters
}

// newPorts creates (or updates) app's changelog, source and dead-letter
// streams, as a standalone edge.Node does for mode: its atomic batches as
// large as the embedded server accepts.
func (e *env) newPorts(ctx context.Context, js natsjs.JetStream, app string, partitions int, agents []manager.Agent, mode deliveryMode) (ports, error) {
	cl, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: app, Partitions: partitions,
		Atomic: mode == exactlyOnce, MaxBatch: e.srv.MaxAtomicBatch()})
	if err != nil {
		return ports{}, err
	}
	src, err := jetstream.NewSource(ctx, js, jetstream.SourceConfig{App: app, Subjects: manager.SubjectsOf(agents),
		Consumer: nodeName, MaxBytes: 4 << 30})
	if err != nil {
		return ports{}, err
	}
	dlq, err := jetstream.NewDeadLetters(ctx, js, app, 1)
	if err != nil {
		return ports{}, err
	}
	return ports{changelog: cl, source: src, dlq: dlq}, nil
}

// builtin returns the table and agent of a built-in table spec.
func builtin(spec string) (manager.Collection, manager.Agent, error) {
	s, err := edgebuiltin.ParseTableSpec(spec)
	if err != nil {
		return nil, manager.Agent{}, err
	}
	return edgebuiltin.Builtin(s)
}

// newManager returns a table manager of partitions partitions over p with
// its stores in storeDir, configured as edge.Node configures it by default
// for mode.
func (e *env) newManager(p ports, partitions int, storeDir string, tables []manager.Collection, agents []manager.Agent, mode deliveryMode) (*manager.TableManager, error) {
	maxRecords, capacity := jetstream.CommitLimits(mode == exactlyOnce, p.changelog.MaxBatch())
	m, err := manager.New(manager.Config{
		Node: nodeName, Partitions: partitions, MaxCommitRecords: maxRecords, CommitCapacity: capacity,
		Changelog: p.changelog, Source: p.source, DeadLetters: p.dlq,
		Stores: store.NewDir(storeDir, nil), Logger: e.plog,
	})
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := m.Add(t); err != nil {
			return nil, err
		}
	}
	for _, a := range agents {
		if err := m.AddAgent(a); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// running is a manager whose Run goroutine it owns.
type running struct {
	m      *manager.TableManager
	start  time.Time
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// run starts m.Run in a goroutine; start is taken just before.
func run(ctx context.Context, m *manager.TableManager) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	r.start = time.Now()
	go func() { r.done <- m.Run(ctx) }()
	return r
}

// check returns an error if Run has returned.
func (r *running) check() error {
	if r.ended {
		return r.exitErr()
	}
	select {
	case r.err = <-r.done:
		r.ended = true
		return r.exitErr()
	default:
		return nil
	}
}

func (r *running) exitErr() error {
	if r.err != nil {
		return fmt.Errorf("table manager stopped: %w", r.err)
	}
	return errors.New("table manager stopped")
}

// stop ends Run (which commits and closes the stores) and waits for it.
func (r *running) stop() error {
	r.cancel()
	if !r.ended {
		r.err, r.ended = <-r.done, true
	}
	if r.err != nil {
		return fmt.Errorf("table manager: %w", r.err)
	}
	return nil
}

// waitReady waits until every partition is recovered.
func (r *running) waitReady(ctx context.Context) error {
	return waitUntil(ctx, "the table manager to be ready", time.Millisecond, func() (bool, error) {
		if err := r.check(); err != nil {
			return false, err
		}
		return r.m.Ready(), nil
	})
}

// waitCommitted waits until every partition has committed the source up to
// seq, and returns when that was seen. Its error shows the partitions as
// last seen.
func (r *running) waitCommitted(ctx context.Context, seq uint64) (time.Time, error) {
	var at time.Time
	var st status.Status
	// Every 10 ms: Status costs about 0.1 ms of CPU, which more frequent
	// polling would take from the run it measures.
	err := waitUntil(ctx, fmt.Sprintf("every partition to commit source sequence %d", seq), 10*time.Millisecond, func() (bool, error) {
		if err := r.check(); err != nil {
			return false, err
		}
		st = r.m.Status()
		if len(st.Partitions) != r.m.Partitions() {
			return false, nil
		}
		for _, p := range st.Partitions {
			if p.SourceSeq < seq {
				return false, nil
			}
		}
		at = time.Now()
		return true, nil
	})
	if err != nil {
		var parts []string
		for _, p := range st.Partitions {
			parts = append(parts, fmt.Sprintf("%d:%s@%d", p.Partition, p.State, p.SourceSeq))
		}
		return at, fmt.Errorf("%w (partitions %s; %d events processed, %d commits)", err, strings.Join(parts, " "), st.EventsProcessed, st.Commits)
	}
	return at, nil
}

// deadLetters returns the number of refused events.
func deadLetters(st status.Status) uint64 {
	var n uint64
	for _, c := range st.DeadLetters {
		n += c
	}
	return n
}
