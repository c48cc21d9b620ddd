// Package tabletest runs the agents and tables of an edgetables app in a
// unit test, without NATS or a disk, as Kafka Streams' TopologyTestDriver
// and Goka's tester do: feed events, move the clock, read the tables and
// the dead letters, crash and recover.
//
// Declare tables and agents as for a node (manager.NewTable,
// NewWindowedTable, NewSetTable, NewGlobalTable, manager.Agent) and hand
// them to New. The Driver runs them in a real manager.TableManager whose
// changelog, source, global log and dead-letter stream are held in memory:
// events are dispatched, keyed, partitioned, refused to the dead letters,
// written, committed, recovered and their windows closed by the manager's
// own code, on the test's goroutine, before each call returns. Only the
// schedule is the Driver's: it reads the source when the test sends, and
// commits and closes windows when the test says so (by default after
// every Send, and at every Advance).
//
// A test reads tables with the tables' own methods (Table.Lookup,
// WindowedTable.LookupAll, SetTable.Lookup, GlobalTable.Get), which see
// committed state, as on a node; Count, Keys and Records list them, and
// DeadLetters lists the refused events. It writes global tables with
// GlobalTable.Set, as an operator's tool would.
//
//	counts := manager.NewTable(manager.TableConfig[string, int64]{
//		Name: "word-counts", Keys: codec.String{}, Values: codec.Int64{}})
//	d, err := tabletest.New(tabletest.Config{
//		Tables: []manager.Collection{counts}, Agents: []manager.Agent{countWords}})
//	// handle err; defer d.Close()
//	d.Send("words", []byte("the"))
//	n, _, _ := counts.Lookup(ctx, "the") // 1
//
// Everything is deterministic: the clock moves only when the test moves it
// (Advance, SetClock), messages get source sequences 1, 2, 3..., and each
// call finishes its work before it returns (the manager's recovery and
// commit goroutines included; only the idle follower of the global tables
// stays). A Driver is not safe for concurrent use.
package tabletest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/internal/drive"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// DefaultStart is the driver clock's default starting time.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config declares what a Driver runs. Zero fields take the defaults named.
type Config struct {
	// Tables and Agents are the app's, as given to a node. Required: at
	// least one agent. A table may belong to one running Driver (or
	// manager) at a time.
	Tables []manager.Collection
	Agents []manager.Agent
	// Partitions is the number of partitions (default 8, as a node's).
	// Keys are spread over them by manager.PartitionOf, so an agent that
	// writes a key of another partition than its event's fails here as
	// on a node.
	Partitions int
	// Start is the clock's time when the Driver starts (default
	// DefaultStart). The clock is every windowed table's Clock (replacing
	// the one it was declared with) and the time of messages sent without
	// one.
	Start time.Time
	// ManualCommit, when set, commits only when the test calls Commit or
	// Close (and when the manager's own limits below force a commit), so
	// that a test can Crash with writes uncommitted. By default the Driver
	// commits after every Send, SendMessages, Process and Advance, so that
	// reads (which see committed state) see every event's effects.
	ManualCommit bool
	// CommitEvery, MaxCommitRecords, CommitCapacity, MaxRecordBytes and
	// KeepSource are the manager.Config fields of the same names (limits
	// whose breach commits early or refuses an event to the dead letters).
	CommitEvery      int
	MaxCommitRecords int
	CommitCapacity   int
	MaxRecordBytes   int
	KeepSource       bool
	// Logger receives the manager's logs (default: discarded).
	Logger *slog.Logger
}

// Message is one event to send.
type Message struct {
	Subject string
	Data    []byte
	Header  map[string][]string
	// Time is the message's stream time (Event.Time), the time windowed
	// tables use by default; zero means the Driver's clock.
	Time time.Time
}

// Driver runs tables and agents in memory. Make it with New; Close it.
type Driver struct {
	cfg Config
	ctx context.Context

	// The streams, which outlive managers.
	changelog *changelog
	source    *source
	global    *globalLog
	dead      *deadLetters
	// The stores, which outlive a Restart, not a Crash.
	stores, globalStores *store.MemoryProvider

	clockMu sync.Mutex
	wall    time.Time
	mono    time.Duration

	m      *manager.TableManager
	core   drive.Core
	closed bool
}

// ErrClosed is returned by the methods of a closed Driver.
var ErrClosed = errors.New("tabletest: driver closed")

// New starts a Driver: the tables are recovered (empty) and the agents
// wait for messages.
func New(cfg Config) (*Driver, error) {
	if len(cfg.Agents) == 0 {
		return nil, errors.New("tabletest: Config.Agents: no agent")
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 8
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Partitions < 1 || cfg.Partitions > 1024 {
		return nil, fmt.Errorf("tabletest: Config.Partitions %d: want 1 to 1024", cfg.Partitions)
	}
	d := &Driver{
		cfg:          cfg,
		ctx:          context.Background(),
		changelog:    newChangelog(cfg.Partitions),
		source:       newSource(manager.SubjectsOf(cfg.Agents)),
		global:       newGlobalLog(),
		dead:         &deadLetters{},
		stores:       store.NewMemoryProvider(),
		globalStores: store.NewMemoryProvider(),
		wall:         cfg.Start,
	}
	if err := d.start(); err != nil {
		return nil, err
	}
	return d, nil
}

// start makes a manager of the tables and agents on the Driver's streams
// and stores, and recovers it.
func (d *Driver) start() error {
	m, err := manager.New(manager.Config{
		Node:             "tabletest",
		Partitions:       d.cfg.Partitions,
		CommitEvery:      d.commitEvery(),
		MaxCommitRecords: d.cfg.MaxCommitRecords,
		CommitCapacity:   d.cfg.CommitCapacity,
		MaxRecordBytes:   d.cfg.MaxRecordBytes,
		KeepSource:       d.cfg.KeepSource,
		Changelog:        d.changelog,
		Source:           d.source,
		DeadLetters:      d.dead,
		Stores:           d.stores,
		Global:           d.global,
		GlobalStores:     d.globalStores,
		Logger:           d.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("tabletest: %w", err)
	}
	for _, t := range d.cfg.Tables {
		if err := m.Add(t); err != nil {
			return fmt.Errorf("tabletest: %w", err)
		}
	}
	for _, a := range d.cfg.Agents {
		if err := m.AddAgent(a); err != nil {
			return fmt.Errorf("tabletest: %w", err)
		}
	}
	core, err := drive.New(m, drive.Clock{Wall: d.Now, Mono: d.monotonic})
	if err != nil {
		return fmt.Errorf("tabletest: %w", err)
	}
	if err := core.Start(d.ctx); err != nil {
		return fmt.Errorf("tabletest: start: %w", err)
	}
	d.m, d.core = m, core
	return nil
}

// commitEvery is manager.Config.CommitEvery: with ManualCommit and no
// CommitEvery, commits come from the test (and MaxCommitRecords) only.
func (d *Driver) commitEvery() int {
	if d.cfg.CommitEvery == 0 && d.cfg.ManualCommit {
		return math.MaxInt
	}
	return d.cfg.CommitEvery
}

func (d *Driver) check() error {
	if d.closed {
		return ErrClosed
	}
	return nil
}

// Send sends one message with the Driver's clock as its time and processes
// it (see SendMessages).
func (d *Driver) Send(subject string, data []byte) error {
	return d.SendMessages(Message{Subject: subject, Data: data})
}

// SendMessages appends msgs to the source, in order, and processes every
// message the source holds that is not processed yet, as a node does:
// each agent whose Subjects match takes it in the partition of its Key,
// in source order (a message no agent reads is skipped; a node's source
// would not have captured it). Unless ManualCommit, it then commits. An agent's error
// or panic is not an error of SendMessages: the event goes to the dead
// letters (DeadLetters). Errors are the Driver's (closed) or the
// manager's.
func (d *Driver) SendMessages(msgs ...Message) error {
	if err := d.check(); err != nil {
		return err
	}
	d.source.add(msgs, d.Now())
	return d.Process()
}

// Process processes every message the source holds that is not processed
// yet (after a Crash or Restart: those whose effects were not committed)
// and, unless ManualCommit, commits.
func (d *Driver) Process() error {
	if err := d.check(); err != nil {
		return err
	}
	if _, err := d.core.Poll(d.ctx); err != nil {
		return fmt.Errorf("tabletest: process: %w", err)
	}
	if d.cfg.ManualCommit {
		return nil
	}
	return d.commit()
}

// Commit ends a commit interval, as a node does every CommitInterval: the
// windows due by the clock close (OnWindowClose runs), then every
// partition commits its writes with its source position, and the source
// is trimmed of what every partition committed (unless KeepSource).
func (d *Driver) Commit() error {
	if err := d.check(); err != nil {
		return err
	}
	return d.commit()
}

func (d *Driver) commit() error {
	d.core.CloseWindows(d.ctx)
	if err := d.core.Commit(d.ctx); err != nil {
		return fmt.Errorf("tabletest: commit: %w", err)
	}
	return nil
}

// Now returns the Driver's clock: the node's clock as windowed tables read
// it.
func (d *Driver) Now() time.Time {
	d.clockMu.Lock()
	defer d.clockMu.Unlock()
	return d.wall
}

func (d *Driver) monotonic() time.Duration {
	d.clockMu.Lock()
	defer d.clockMu.Unlock()
	return d.mono
}

// Advance lets dt pass (the clock and the monotonic clock move together),
// then makes a closing pass: every window whose end plus Expires is now
// past closes, OnWindowClose runs with its final value, and the window
// leaves its table. Unless ManualCommit, it then commits (as Commit);
// with ManualCommit the closes are buffered like any write until the next
// commit, and a Crash before it closes them again after recovery.
func (d *Driver) Advance(dt time.Duration) error {
	if err := d.check(); err != nil {
		return err
	}
	if dt < 0 {
		return fmt.Errorf("tabletest: Advance(%s): time does not go back (SetClock steps the clock)", dt)
	}
	d.clockMu.Lock()
	d.wall, d.mono = d.wall.Add(dt), d.mono+dt
	d.clockMu.Unlock()
	if d.cfg.ManualCommit {
		d.core.CloseWindows(d.ctx)
		return nil
	}
	return d.commit()
}

// SetClock steps the node's clock to t without time passing (the
// monotonic clock stays), as an NTP correction or a bad clock does; no
// window closes until the next Advance or Commit. Windowed tables apply
// their MaxClockSkew rules to the step.
func (d *Driver) SetClock(t time.Time) {
	d.clockMu.Lock()
	d.wall = t
	d.clockMu.Unlock()
}

// Crash kills the node and starts it again with empty stores: its
// uncommitted writes and window closes are lost, and each partition is
// rebuilt by the manager's recovery from the changelog the Driver kept
// (every commit so far), global tables from the global log. It returns
// with the tables as committed before the crash. The messages whose
// effects were not committed are still in the source: the next Send,
// SendMessages or Process processes them again, as a restarted node does.
// Dead letters already sent stay sent (an event refused again is sent
// again).
func (d *Driver) Crash() error {
	if err := d.check(); err != nil {
		return err
	}
	d.core.Crash()
	d.stores, d.globalStores = store.NewMemoryProvider(), store.NewMemoryProvider()
	return d.restart()
}

// Restart stops the node as a node stops on a signal (a final commit, its
// stores kept) and starts it again: the partitions recover from their
// stores and the changelog's tail.
func (d *Driver) Restart() error {
	if err := d.check(); err != nil {
		return err
	}
	if err := d.core.Stop(d.ctx); err != nil {
		d.closed = true
		return fmt.Errorf("tabletest: stop: %w", err)
	}
	return d.restart()
}

func (d *Driver) restart() error {
	if err := d.start(); err != nil {
		d.closed = true
		return err
	}
	return nil
}

// Close commits what is uncommitted and stops the node. The tables can
// then be given to another Driver. Closing twice is harmless.
func (d *Driver) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if err := d.core.Stop(d.ctx); err != nil {
		return fmt.Errorf("tabletest: close: %w", err)
	}
	return nil
}

// Manager returns the running manager (a new one after each Crash or
// Restart), for its query methods: Get, Scan, Count, Windows, Status.
func (d *Driver) Manager() *manager.TableManager { return d.m }

// DeadLetters returns the events the agents refused so far, in the order
// they were refused, with the agent and the reason: the Key's error
// ("key: ..."), Process's error or panic, or a limit (a key or value too
// large, too many keys for one commit).
func (d *Driver) DeadLetters() []port.DeadLetter { return d.dead.all() }

// Count returns the number of committed keys of table (for a windowed
// table, of windows).
func (d *Driver) Count(table string) (int, error) {
	if err := d.check(); err != nil {
		return 0, err
	}
	return d.m.Count(table)
}

// Keys returns the committed keys of table in their text form, in the
// order of their encoding (a windowed table's as "key@window-start"). It
// fails for a table whose keys have no text form.
func (d *Driver) Keys(table string) ([]string, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	t, err := d.m.Table(table)
	if err != nil {
		return nil, err
	}
	kvs, err := d.m.Scan(d.ctx, table, nil, nil, math.MaxInt)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		k, err := t.FormatKey(kv.Key)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Records returns the records of table committed to its changelog so far
// (not of global tables), partition by partition, each in log order: every
// committed change, a key's writes within one commit coalesced into one
// record. Values are encoded; a delete has Delete set.
func (d *Driver) Records(table string) []port.Record { return d.changelog.records(table) }
