// Package manager is the table manager of edgetables: Faust's TableManager
// rebuilt on an abstract changelog and source, with local stores.
//
// A TableManager owns the tables and agents of an app. It recovers the local
// store of every partition assigned to it from the partition's changelog,
// feeds source events to agents, and commits: the changelog records of a
// commit are stored first, then the offsets are persisted with the data in
// one store transaction, then the source messages are acknowledged. See
// docs/ARCHITECTURE.md for the mapping of Faust's terms.
//
// The manager speaks in tables, partitions, offsets and commits. It reaches
// the message system through the interfaces of package port (package
// jetstream implements them on NATS JetStream) and its disk through package
// store; it reports in the documents of package status; windowed tables cut
// time with package window, and codecs are package codec's.
package manager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/store"
)

// Config configures a TableManager. Zero fields take the defaults named.
type Config struct {
	// Node names this node in commit markers and logs. Required.
	Node string
	// Partitions is the number of partitions of every table (default 8).
	// It must not change for an existing app.
	Partitions int
	// CommitInterval is the longest time between commits while the source
	// has a backlog (default 250ms; a source the reader has caught up
	// with is committed sooner, see CommitIdle). Shorter means fresher
	// reads under load and fewer events replayed after a crash, at the
	// cost of more, smaller changelog writes and store transactions: a
	// longer interval coalesces more writes to the same key into one
	// changelog record.
	CommitInterval time.Duration
	// CommitEvery commits after this many events even before the interval
	// ends (default 50,000). A partition whose previous commit is still
	// being written keeps buffering; processing waits for that commit once
	// the partition buffers this many keys. It bounds the uncommitted
	// state in memory.
	CommitEvery int
	// CommitIdle commits the events read since the last commit once the
	// reader has caught up with the source (port.DrainingReader) and
	// nothing came for this long, without waiting for CommitInterval to
	// end (default 20ms; negative: never, commits wait for
	// CommitInterval or CommitEvery), and 100 ms after the last commit at
	// the soonest. A light load's reads are then fresh within about
	// CommitIdle after a pause, and within about 100 ms under a trickle of
	// events, while a source with a backlog commits every CommitInterval
	// and coalesces more writes to the same key into one changelog record.
	CommitIdle time.Duration
	// RecoveryBufferSize bounds the changelog records a recovery holds in
	// memory and writes to the store in one transaction (default 10,000).
	// The replay reads a batch of half of it while the store writes the
	// one before, in one transaction.
	RecoveryBufferSize int
	// StandbyBufferSize is the number of changelog records a standby
	// applies in one transaction (default 1,000): a standby lags its active
	// by at most this many records while the log grows.
	StandbyBufferSize int
	// ReadBatch is the most source messages read at a time (default 4096).
	ReadBatch int
	// Coordinator, when set, makes the node a member of a cluster: it
	// receives its partitions from the group's assignment instead of
	// taking all of them.
	Coordinator port.Coordinator
	// SessionTimeout bounds how long a member that stopped renewing its
	// lease keeps its partitions (default 5s). Shorter means faster
	// failover and more heartbeat traffic; below about 2 s, KV TTL
	// granularity (1 s) makes leases flap.
	SessionTimeout time.Duration
	// Standbys is the number of standby replicas per partition in a
	// cluster (0: none; the CLI's default is 1). Each costs a full copy of
	// the partition's store on another node and a follower reading its
	// changelog; in return a failover replays only the standby's lag.
	Standbys int
	// HTTPAddr is this node's HTTP API address, shown to other members.
	HTTPAddr string
	// MaxCommitRecords commits a partition as soon as its buffer holds
	// this many keys (0: no limit), waiting for its previous commit if that
	// is still being written, so that a commit fits the changelog's
	// largest atomic write (the exactly-once mode: 999 records and a
	// marker in one JetStream atomic batch).
	MaxCommitRecords int
	// CommitCapacity is the most records one commit can hold (exactly
	// once: the changelog's atomic batch limit less the marker); 0 means
	// MaxCommitRecords. An event whose writes would take its partition's
	// buffer past it commits the buffer first; an event that alone writes
	// more keys goes to the dead-letter subject with its writes dropped.
	CommitCapacity int
	// MaxRecordBytes is the largest value a changelog record can carry
	// (the NATS max_payload less room for headers); 0: no limit. An event
	// that writes a larger value goes to the dead-letter subject with its
	// writes dropped: its record could never be committed.
	MaxRecordBytes int
	// KeepSource keeps committed events in the source stream. By default
	// they are removed once every partition has committed them, so the
	// stream holds only unprocessed events.
	KeepSource bool
	// SourceHold, when set, keeps source events for a reader outside the
	// app (the hub of an edge site, which sources the stream): the trim
	// never removes an event it has not taken, and removes nothing while
	// that is unknown. Used only when the trim runs (not KeepSource).
	SourceHold port.SourceHold
	// Changelog, Source and Stores are required; DeadLetters may be nil,
	// in which case refused events are only logged and counted.
	Changelog   port.Changelog
	Source      port.Source
	DeadLetters port.DeadLetters
	Stores      store.Provider
	// Global and GlobalStores hold the global tables (see GlobalTable):
	// the log every node writes and follows, and the provider of this
	// node's store of it (its store 0). Both are required once a global
	// table is added, and unused otherwise.
	Global       port.GlobalLog
	GlobalStores store.Provider
	// ChangelogBehind says what to do with a partition whose changelog is
	// behind its store (deleted, or restored from an older backup, while
	// the store holds newer state): stop it (""/ChangelogBehindStop, the
	// default), write the store back into the log (ChangelogBehindReseed)
	// or rebuild the store from the log (ChangelogBehindAccept).
	ChangelogBehind ChangelogBehind
	// RecoveryHooks observe the recovery of actives and standbys (start,
	// batches, end, suspension); the zero value observes nothing. They
	// run on the partitions' recovery goroutines and must not block.
	RecoveryHooks RecoveryHooks
	// Listener observes the manager's start and stop, its rebalances and
	// its partitions' commits (Faust's TableManager callbacks); the zero
	// value observes nothing. It is called on the goroutine that called
	// Run and must return quickly (see Listener).
	Listener Listener
	// Logger receives the manager's logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Node == "" {
		return errors.New("manager config: Node is required")
	}
	if c.Changelog == nil || c.Source == nil || c.Stores == nil {
		return errors.New("manager config: Changelog, Source and Stores are required")
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		return fmt.Errorf("manager config: Partitions %d: want 1 to 1024", c.Partitions)
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 250 * time.Millisecond
	}
	if c.CommitInterval < 0 {
		return fmt.Errorf("manager config: CommitInterval %s is negative", c.CommitInterval)
	}
	if c.CommitEvery == 0 {
		c.CommitEvery = 50000
	}
	if c.CommitIdle == 0 {
		c.CommitIdle = 20 * time.Millisecond
	}
	if c.RecoveryBufferSize == 0 {
		c.RecoveryBufferSize = 10000
	}
	if c.ReadBatch == 0 {
		c.ReadBatch = 4096
	}
	if c.StandbyBufferSize == 0 {
		c.StandbyBufferSize = 1000
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 5 * time.Second
	}
	if c.SessionTimeout < time.Second {
		return fmt.Errorf("manager config: SessionTimeout %s: want at least 1s", c.SessionTimeout)
	}
	if c.Standbys < 0 {
		return fmt.Errorf("manager config: Standbys %d is negative", c.Standbys)
	}
	if c.CommitEvery < 0 || c.RecoveryBufferSize < 0 || c.ReadBatch < 0 || c.MaxCommitRecords < 0 || c.CommitCapacity < 0 || c.MaxRecordBytes < 0 {
		return errors.New("manager config: CommitEvery, RecoveryBufferSize, ReadBatch, MaxCommitRecords, CommitCapacity and MaxRecordBytes must not be negative")
	}
	if c.CommitCapacity == 0 {
		c.CommitCapacity = c.MaxCommitRecords
	}
	switch c.ChangelogBehind {
	case "", ChangelogBehindStop, ChangelogBehindReseed, ChangelogBehindAccept:
	default:
		return fmt.Errorf("manager config: ChangelogBehind %q: want %q, %q or %q", c.ChangelogBehind,
			ChangelogBehindStop, ChangelogBehindReseed, ChangelogBehindAccept)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// TableManager manages the tables and agents of one app on one node.
type TableManager struct {
	cfg Config
	log *slog.Logger

	tables map[string]Collection
	agents []*Agent
	frozen atomic.Bool

	mu    sync.RWMutex // guards parts
	parts map[int]*partition

	recovery *recovery
	// global is this node's copy of the global tables (nil without any).
	global   *globalReplica
	counters counters
	// warnings rate-limits warnings that a failing dependency repeats
	// (commits, acks): one per kind every 10 s, with a count.
	warnings logLimiter
	// dlq sends refused events to the dead letters.
	dlq *deadLetterSender
	// commitLatency observes every commit's duration.
	commitLatency latencyHistogram

	// The processing goroutine owns reader and examined (the last source
	// sequence dispatched); seen is examined for the status.
	reader   port.SourceReader
	examined uint64
	seen     atomic.Uint64
	// sourceEpoch is the source's epoch as last checked, at
	// lastSourceCheck (sourceepoch.go); owned by the processing goroutine.
	sourceEpoch     string
	lastSourceCheck time.Time
	// lastSource is the source's state as the last syncSource read it
	// (nil: that read failed); owned by the processing goroutine.
	lastSource *port.SourceState
	// sourceFailing is the current streak of failures to open or read
	// the source (nil: none); written by the processing goroutine.
	sourceFailing atomic.Pointer[sourceFailure]
	// takeoverSource is the takeovers' shared read of the source's state
	// (resolveRecovered).
	takeoverSource takeoverSourceRead
	// full is set when a partition reached MaxCommitRecords.
	full bool
	// commitWG counts the running commit goroutines (pipeline.go); the
	// processing goroutine starts them and waits for them before it ends.
	commitWG sync.WaitGroup
	gen      atomic.Uint64
	// actives are this node's actives in the applied assignment.
	actives []int
	// fenced is set when a commit found a partition fenced.
	fenced atomic.Bool
	// leading is set while this node holds the group's leader lease;
	// leadershipGained (buffered, one) is signalled when it becomes set.
	leading          atomic.Bool
	leadershipGained chan struct{}
	// instance (random) and started identify this run of the node in the
	// group, so that two live instances of one name are told apart.
	instance string
	started  time.Time

	// events from partition tasks and the group loop to the processor
	events chan procEvent
	// assignment handed from the group loop to the processor (latest wins)
	assignMu      sync.Mutex
	pendingAssign *assign.Assignment
	assignSignal  chan struct{}
	// assignArrived is closed (and replaced) when an assignment is set
	// pending: the processing goroutine's waits on the source give way
	// to it (yielding).
	assignArrived chan struct{}
	// stateSignal asks the group loop to heartbeat now
	stateSignal chan struct{}

	viewMu      sync.Mutex
	view        *port.GroupView
	viewChanged chan struct{} // closed and replaced on every new view

	activesReady  atomic.Bool
	standbysReady atomic.Bool
	running       atomic.Bool
	// finished is set when Run has returned: the manager's tables may
	// then be added to a new manager (a node starting again in process).
	finished atomic.Bool
}

// New returns a TableManager; Add tables and agents, then Run it.
func New(cfg Config) (*TableManager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &TableManager{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.Node),
		tables: make(map[string]Collection),
		parts:  make(map[int]*partition),
	}
	m.recovery = newRecovery(m)
	m.events = make(chan procEvent)
	m.assignSignal = make(chan struct{}, 1)
	m.assignArrived = make(chan struct{})
	m.stateSignal = make(chan struct{}, 1)
	m.leadershipGained = make(chan struct{}, 1)
	m.viewChanged = make(chan struct{})
	m.counters.deadLetters = make(map[string]*atomic.Uint64)
	m.counters.deadLetterReasons = make(map[string]*atomic.Uint64)
	for _, r := range DeadLetterReasons {
		m.counters.deadLetterReasons[r] = new(atomic.Uint64)
	}
	m.dlq = newDeadLetterSender(m)
	m.warnings.every = 10 * time.Second
	m.instance, m.started = newInstanceID(), time.Now().UTC()
	return m, nil
}

// Add registers a table. Tables are fixed once the manager starts
// (ErrStarted); names are unique (ErrDuplicate).
func (m *TableManager) Add(t Collection) error {
	if m.frozen.Load() {
		return fmt.Errorf("add table %s: %w", t.Name(), ErrStarted)
	}
	if err := t.bind(m); err != nil {
		return err
	}
	if _, dup := m.tables[t.Name()]; dup {
		return fmt.Errorf("add table %s: %w", t.Name(), ErrDuplicate)
	}
	m.tables[t.Name()] = t
	if _, ok := t.(globalTable); ok && m.global == nil {
		m.global = newGlobalReplica(m)
	}
	return nil
}

// IsGlobal reports whether table is a global table (see GlobalTable).
func (m *TableManager) IsGlobal(table string) bool { return isGlobalTable(m.tables[table]) }

// isGlobalTable reports whether t is a global table (see GlobalTable).
func isGlobalTable(t Collection) bool {
	_, ok := t.(globalTable)
	return ok
}

// AddAgent registers an agent. Agents are fixed once the manager starts.
func (m *TableManager) AddAgent(a Agent) error {
	if m.frozen.Load() {
		return fmt.Errorf("add agent %s: %w", a.Name, ErrStarted)
	}
	if err := a.validate(); err != nil {
		return err
	}
	for _, b := range m.agents {
		if b.Name == a.Name {
			return fmt.Errorf("add agent %s: %w", a.Name, ErrDuplicate)
		}
	}
	m.agents = append(m.agents, &a)
	m.counters.deadLetters[a.Name] = new(atomic.Uint64)
	return nil
}

// Table returns the table named name.
func (m *TableManager) Table(name string) (Collection, error) {
	t, ok := m.tables[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrTableNotFound, name)
	}
	return t, nil
}

// Tables returns the tables in name order.
func (m *TableManager) Tables() []Collection {
	ts := make([]Collection, 0, len(m.tables))
	for _, t := range m.tables {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name() < ts[j].Name() })
	return ts
}

// Partitions returns the number of partitions of every table.
func (m *TableManager) Partitions() int { return m.cfg.Partitions }

// Node returns the node's name.
func (m *TableManager) Node() string { return m.cfg.Node }

// SubjectsOf returns the distinct subjects of agents, sorted.
func SubjectsOf(agents []Agent) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range agents {
		for _, s := range a.Subjects {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// subjects returns the changelog subjects of table.
func (m *TableManager) subjects(table string) []string {
	if m.IsGlobal(table) {
		return m.cfg.Global.Subjects(table)
	}
	return m.cfg.Changelog.Subjects(table)
}

// onRebalanceStart begins a rebalance to generation (Faust's
// on_rebalance_start): neither actives nor standbys are ready until it
// ends. It runs on the processing goroutine.
func (m *TableManager) onRebalanceStart(generation uint64) {
	m.activesReady.Store(false)
	m.standbysReady.Store(false)
	m.counters.rebalances.Add(1)
	if f := m.cfg.Listener.OnRebalanceStarted; f != nil {
		m.notify("rebalance started", func() { f(generation) })
	}
}

// onActivesReady marks every active partition recovered (Faust's
// on_actives_ready). It runs on the processing goroutine.
func (m *TableManager) onActivesReady() {
	m.activesReady.Store(true)
	actives := m.partitionsIn(status.StateActive)
	m.log.Info("actives ready", "generation", m.gen.Load(), "partitions", len(actives))
	if f := m.cfg.Listener.OnActivesReady; f != nil {
		m.notify("actives ready", func() { f(PartitionsReady{Generation: m.gen.Load(), Partitions: actives}) })
	}
}

// onStandbysReady marks every standby caught up (Faust's
// on_standbys_ready). It runs on the processing goroutine, after
// onActivesReady of the same generation.
func (m *TableManager) onStandbysReady() {
	m.standbysReady.Store(true)
	if f := m.cfg.Listener.OnStandbysReady; f != nil {
		standbys := m.partitionsIn(status.StateStandby)
		m.notify("standbys ready", func() { f(PartitionsReady{Generation: m.gen.Load(), Partitions: standbys}) })
	}
}

// Ready reports whether the manager is running and every assigned
// partition is recovered and processing.
func (m *TableManager) Ready() bool {
	return m.running.Load() && m.activesReady.Load() && (m.global == nil || m.global.ready.Load())
}

func (m *TableManager) partition(id int) *partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.parts[id]
}

// assigned returns the assigned partitions in order.
func (m *TableManager) assigned() []*partition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ps := make([]*partition, 0, len(m.parts))
	for _, p := range m.parts {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	return ps
}

// newInstanceID returns 16 random hex digits.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// heldBy reports whether a collection bound to old cannot be added to m:
// old is another manager that has not finished its Run.
func heldBy(old, m *TableManager) bool {
	return old != nil && old != m && !old.finished.Load()
}
