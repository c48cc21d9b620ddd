package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/internal/drive"
)

// The synchronous core of a TableManager, for package tabletest (through
// manager/internal/drive): the steps of Run's processing loop (rebalance,
// recovery, dispatch, window closing, commit, trim), each called on the
// caller's goroutine and finished before it returns. Only the scheduling
// is the caller's: when to read, close windows and commit. Every effect
// on tables, changelogs, offsets and dead letters comes from the code Run
// uses.

func init() { drive.New = newDriveCore }

// driveCore implements drive.Core.
type driveCore struct {
	m          *TableManager
	stopGlobal func()
	// since counts the events examined since the last commit, as Run's
	// loop does for CommitEvery.
	since int
}

// clockSetter is a table whose clock a driver replaces.
type clockSetter interface {
	setClock(wall func() time.Time, mono func() time.Duration)
}

// setClock makes t read wall and mono instead of its Clock and the
// process's monotonic clock; the closing clock starts afresh from them.
func (t *WindowedTable[K, V]) setClock(wall func() time.Time, mono func() time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.clock.wall, t.clock.mono = wall, mono
	t.clock.set, t.clock.ahead = false, false
}

func newDriveCore(x any, clock drive.Clock) (drive.Core, error) {
	m, ok := x.(*TableManager)
	if !ok {
		return nil, fmt.Errorf("drive: %T is not a *manager.TableManager", x)
	}
	if m.frozen.Load() || m.running.Load() {
		return nil, fmt.Errorf("drive: %w", ErrStarted)
	}
	if (clock.Wall == nil) != (clock.Mono == nil) {
		return nil, errors.New("drive: Clock needs both Wall and Mono, or neither")
	}
	if clock.Wall != nil {
		for _, t := range m.tables {
			if c, ok := t.(clockSetter); ok {
				c.setClock(clock.Wall, clock.Mono)
			}
		}
	}
	return &driveCore{m: m}, nil
}

// Start is Run's start without its goroutines of its own: the global
// tables' replica, then the assignment of every partition to this node,
// whose recoveries run as Run runs them; it returns when each partition is
// active.
func (c *driveCore) Start(ctx context.Context) error {
	m := c.m
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("drive: Start called twice")
	}
	m.frozen.Store(true)
	stop, err := m.startGlobal(ctx)
	if err != nil || stop == nil {
		m.running.Store(false)
		m.finished.Store(true)
		return errors.Join(err, ctx.Err())
	}
	c.stopGlobal = stop
	all := assign.Assignment{Generation: 1, Partitions: m.cfg.Partitions, Actives: make([]string, m.cfg.Partitions)}
	for i := range all.Actives {
		all.Actives[i] = m.cfg.Node
	}
	if err := m.applyAssignment(ctx, all); err != nil {
		c.Crash()
		return err
	}
	for m.activeCount() < m.cfg.Partitions {
		select {
		case ev := <-m.events:
			if err := m.handle(ctx, ev); err != nil {
				c.Crash()
				return err
			}
		case <-ctx.Done():
			c.Crash()
			return ctx.Err()
		}
	}
	if m.reader == nil {
		m.reposition(ctx)
	}
	if m.reader == nil {
		c.Crash()
		return errors.New("drive: the source could not be opened")
	}
	return nil
}

// Poll is the reading half of Run's loop: every message the source holds
// past the last one examined is dispatched, skipped if seen, and commits
// happen when CommitEvery or MaxCommitRecords says so.
func (c *driveCore) Poll(ctx context.Context) (int, error) {
	m := c.m
	n := 0
	for {
		if m.reader == nil {
			m.reposition(ctx)
			if m.reader == nil {
				return n, errors.New("drive: the source could not be opened")
			}
		}
		reader := m.reader
		msgs, err := reader.Next(ctx, m.cfg.ReadBatch, 0)
		if err != nil {
			return n, fmt.Errorf("read source after seq %d: %w", m.examined, err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		for i := range msgs {
			if m.reader != reader {
				break // repositioned: the new reader delivers the rest
			}
			if msgs[i].Seq <= m.examined {
				continue
			}
			if msgs[i].Seq > m.examined+1 {
				m.checkGap(ctx, m.examined+1, msgs[i].Seq-1)
			}
			m.dispatch(ctx, &msgs[i])
			n++
			c.since++
			if m.full || c.since >= m.cfg.CommitEvery {
				if err := c.commit(ctx); err != nil {
					return n, err
				}
			}
		}
	}
}

// CloseWindows is Run's closing pass, made at every commit interval.
func (c *driveCore) CloseWindows(ctx context.Context) {
	c.m.closeWindows(ctx)
	c.m.full = c.m.overFull()
}

// Commit commits every partition and waits, acknowledges the source and
// trims it (unless KeepSource) below what every partition committed.
func (c *driveCore) Commit(ctx context.Context) error {
	if err := c.commit(ctx); err != nil {
		return err
	}
	if c.m.cfg.KeepSource {
		return nil
	}
	_, err := c.m.trimSource(ctx)
	return err
}

func (c *driveCore) commit(ctx context.Context) error {
	m := c.m
	err := m.commitAndAck(ctx)
	c.since = 0
	m.full = m.overFull()
	return err
}

// Stop is the end of Run: the final commit, then every partition is
// released.
func (c *driveCore) Stop(ctx context.Context) error {
	err := c.m.stop(ctx)
	c.Crash()
	return err
}

// Crash releases every partition without a commit: what is uncommitted is
// dropped; the stores keep what was committed.
func (c *driveCore) Crash() {
	m := c.m
	m.drainCommits()
	m.closeAll()
	if c.stopGlobal != nil {
		c.stopGlobal()
		c.stopGlobal = nil
	}
	m.running.Store(false)
	m.finished.Store(true)
}
