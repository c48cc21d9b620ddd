package manager

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// stateSource reports fixed stream bounds and counts reader opens.
type stateSource struct {
	port.Source
	first, last uint64
	opens       int
}

func (s *stateSource) State(context.Context) (port.SourceState, error) {
	return port.SourceState{First: s.first, Last: s.last}, nil
}

func (s *stateSource) Open(context.Context, uint64) (port.SourceReader, error) {
	s.opens++
	return idleReader{}, nil
}

type idleReader struct{ port.SourceReader }

func (idleReader) Close() error { return nil }

// TestStallCheckOnTrimmedSource: a reader that delivers nothing is
// reopened only when the source holds events after the last one examined;
// a source trimmed empty (first = last + 1, everything committed) is not a
// stall, however far behind the examined sequence is (it used to warn and
// reopen every 2 s on every idle node after most restarts).
func TestStallCheckOnTrimmedSource(t *testing.T) {
	for _, c := range []struct {
		name        string
		first, last uint64
		examined    uint64
		reopen      bool
	}{
		{"trimmed empty, examined behind", 101, 100, 40, false},
		{"nothing new", 1, 100, 100, false},
		{"events after examined", 50, 100, 60, true},
		{"events after examined, start trimmed", 80, 100, 40, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &stateSource{first: c.first, last: c.last}
			m := &TableManager{cfg: Config{Source: src}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), parts: map[int]*partition{}}
			m.reader, m.examined = idleReader{}, c.examined
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.checkStall(ctx)
			if got := src.opens > 0; got != c.reopen {
				t.Errorf("reopened: %v, want %v", got, c.reopen)
			}
		})
	}
}

// markerLog answers LastCommit with a fixed marker.
type markerLog struct {
	port.Changelog
	marker port.CommitMarker
	found  bool
}

func (l markerLog) LastCommit(context.Context, int) (port.CommitMarker, uint64, bool, error) {
	return l.marker, 1, l.found, nil
}

// TestSourceGapCounting: a gap in the source below an active partition's
// position counts as lost events only if the partition's changelog does
// not show them committed; if another owner committed past the gap, this
// node's copy is stale (a chaos soak logged such gaps as losses while every
// count was exact).
func TestSourceGapCounting(t *testing.T) {
	for _, c := range []struct {
		name   string
		log    markerLog
		counts uint64
	}{
		{"committed past the gap by another owner", markerLog{marker: port.CommitMarker{SourceSeq: 60, Node: "n2"}, found: true}, 0},
		{"committed only before the gap", markerLog{marker: port.CommitMarker{SourceSeq: 10}, found: true}, 40},
		{"no commit at all", markerLog{}, 40},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &TableManager{cfg: Config{Changelog: c.log}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), parts: map[int]*partition{}}
			p := &partition{m: m, id: 0}
			p.setState(status.StateActive)
			p.sourceSeq.Store(10)
			m.parts[0], m.examined = p, 10
			m.checkGap(context.Background(), 11, 50)
			if got := m.counters.sourceGaps.Load(); got != c.counts {
				t.Errorf("source gap events counted: %d, want %d", got, c.counts)
			}
		})
	}
}
