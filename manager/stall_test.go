package manager_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
)

// deafSource is a source whose first reader never delivers anything, as a
// consumer whose leader died may stay silent.
type deafSource struct {
	port.Source
	opens atomic.Int32
}

func (s *deafSource) Open(ctx context.Context, from uint64) (port.SourceReader, error) {
	r, err := s.Source.Open(ctx, from)
	if err != nil || s.opens.Add(1) > 1 {
		return r, err
	}
	return deafReader{r}, nil
}

type deafReader struct{ port.SourceReader }

func (deafReader) Next(ctx context.Context, _ int, wait time.Duration) ([]port.SourceMessage, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return []port.SourceMessage{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSilentReaderIsReopened: a reader that delivers nothing while the
// source holds messages is reopened, and every event is counted once.
func TestSilentReaderIsReopened(t *testing.T) {
	src := &deafSource{}
	h := newHarness(t, manager.Config{Partitions: 2})
	h.wrapSource = func(s port.Source) port.Source { src.Source = s; return src }
	h.start()
	want := map[string]int64{}
	h.publishCounts(300, 10, want)
	h.waitCounts(want)
	if n := src.opens.Load(); n < 2 {
		t.Fatalf("source opened %d times; want the silent reader reopened", n)
	}
	h.publishCounts(100, 10, want)
	h.waitCounts(want)
}
