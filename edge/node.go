// Package edge runs an edgetables node on a device: an embedded NATS
// server with JetStream (or a connection to external NATS), the table
// manager with its bbolt stores, and the HTTP API (package edge/httpapi),
// in one process. It holds what ties them to the device: the data
// directory's lock, the app's recorded shape, the watch of the storage and
// disk, and the links of an edge site to its hub. The built-in --table
// tables are package edge/builtin.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/httpapi"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/store"
)

// Config configures a node. Zero fields take the defaults named.
type Config struct {
	// Name is the node's name, stable across restarts (default: the host
	// name).
	Name string
	// App namespaces every NATS resource the node creates (default
	// "edgetables").
	App string
	// DataDir holds JetStream's storage (DataDir/jetstream), the table
	// stores (DataDir/tables) and the global tables' store (DataDir/global)
	// (default "./data"); with NATSURLs, only the stores. A running node
	// holds the lock of DataDir/LOCK: one node per directory.
	DataDir string
	// NATSListen is the embedded NATS server's client address (default
	// "127.0.0.1:4222"; port 0 picks a free port).
	NATSListen string
	// HTTPListen is the HTTP API's address (default "127.0.0.1:8080"; port
	// 0 picks a free port; "off" disables the API).
	HTTPListen string
	// HTTPTokens, when set, make every route of the HTTP API but /healthz
	// and /readyz ask for a bearer token with the route's scope (see
	// httpapi.Tokens); default: none, every request is served.
	HTTPTokens *httpapi.Tokens
	// HTTPTLS, when set, serves the HTTP API over TLS, with client
	// certificates if it has a client CA (see httpapi.HTTPTLS); default: plain
	// HTTP.
	HTTPTLS *httpapi.HTTPTLS
	// NoConsole turns off the console the HTTP listener serves at / (and
	// GET /v1/history); default: on (see httpapi.API.EnableConsole).
	NoConsole bool
	// SyncAlways makes JetStream fsync every write (default: the server's
	// periodic sync). See the README's durability section.
	SyncAlways bool
	// ExactlyOnce commits each partition's changelog records and commit
	// marker as one JetStream atomic batch, so that no crash can leave a
	// commit half written: every event counts exactly once. It costs a
	// server-side staging store and an fsync per commit, and caps a commit
	// at commitHeadroom fewer records than a batch holds.
	ExactlyOnce bool
	// ClusterName, ClusterListen and Routes make the embedded server one
	// node of a JetStream cluster (see jetstream.ServerConfig): the node
	// then joins the app's consumer group and owns a share of the
	// partitions. Name must be stable and unique in the cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// NATSURLs, when set, make the node a client of an existing NATS
	// JetStream deployment instead of embedding a server; NATS holds the
	// connection's credentials and TLS files. Such a node always joins the
	// consumer group, alone or not.
	NATSURLs []string
	NATS     jetstream.ExternalOptions
	// NATSSecurity configures the embedded server's users, roles and TLS
	// (see jetstream.Security); devices may publish to the tables' declared
	// sources only. Default: none, and then the client and route ports
	// must listen on loopback (or set NATSSecurity.Insecure).
	NATSSecurity jetstream.Security
	// Replicas is the replication of every stream and bucket the node
	// creates (default: 1 alone; in an embedded cluster, 3 when Routes name
	// 3 or more nodes, else 1; with NATSURLs, 1).
	Replicas int
	// Standbys is the number of standby replicas per partition in a
	// cluster (default 1; negative: none). They are never on the node of
	// the partition's active.
	Standbys int
	// SessionTimeout bounds how long a dead member keeps its partitions
	// (default 5s).
	SessionTimeout time.Duration
	// ElectionTimeout is the embedded server's raft election timeout
	// (jetstream.ServerConfig.ElectionTimeout; default 0: the server's,
	// 4 s). The streams a crashed node led accept writes again only after
	// it, so a failover takes at least this long when the dead node led
	// the group's bucket. Ignored with NATSURLs.
	ElectionTimeout time.Duration
	// SourceMaxBytes caps the source stream (default: a quarter of
	// MaxStore, at most 1 GiB; at most half of MaxStore); when it is full,
	// JetStream publishers get errors rather than losing old events.
	SourceMaxBytes int64
	// MaxStore is the embedded server's JetStream storage limit in bytes
	// (default: half of the data directory's free disk, JetStream data
	// included; at least MinMaxStore). Beyond it publishes and commits
	// fail until space is freed; the node reports it in its readiness.
	// MaxMemory is its memory limit (default 256 MiB; the node's streams
	// are on disk). Neither applies with NATSURLs.
	MaxStore, MaxMemory int64
	// TombstoneTTL is how long the changelogs and the global stream keep a
	// deleted key's tombstone (default 24h; negative: for ever). A store
	// whose offset is older than that (a node down longer) is rebuilt by a
	// full replay, since it may have missed tombstones. Closed windows'
	// tombstones have their own TTL (the table spec's tombstone-ttl).
	TombstoneTTL time.Duration
	// deadLetterBytes caps the dead-letter stream (resolveStorage).
	deadLetterBytes int64
	// Partitions, CommitInterval, CommitEvery, CommitIdle,
	// RecoveryBufferSize, StandbyBufferSize and KeepSource are the table
	// manager's (see manager.Config).
	Partitions         int
	CommitInterval     time.Duration
	CommitEvery        int
	CommitIdle         time.Duration
	RecoveryBufferSize int
	StandbyBufferSize  int
	KeepSource         bool
	// Tables and Agents are added to the table manager at start. The
	// partition count and the shape of every table (kind, spec, codecs) are
	// recorded in the app's metadata when the app is created or the table
	// first declared; a node that differs is refused (ErrAppShape).
	Tables []manager.Collection
	Agents []manager.Agent
	// ResetTables names declared tables to reset at start (the CLI's
	// --reset-table) when their shape differs from the recorded one or
	// nodes ran without them: their records are dropped from the changelog
	// of every partition and the stores of every node, their new shape is
	// recorded, and they start empty from the current source position.
	// Every other node of the app must be stopped. A table whose shape is
	// the recorded one is left alone, with a warning.
	ResetTables []string
	// ChangelogBehind says what to do with a partition whose changelog is
	// behind its store (the CLI's --changelog-behind; see
	// manager.Config.ChangelogBehind): stop it (default), reseed the
	// changelog from the store, or accept the changelog as it is.
	ChangelogBehind manager.ChangelogBehind
	// RecoveryHooks observe the recovery of actives and standbys (see
	// manager.RecoveryHooks); they must not block.
	RecoveryHooks manager.RecoveryHooks
	// Listener observes the node's table manager: its start and stop,
	// rebalances and commits (see manager.Listener). It is called on the
	// manager's processing goroutine and must return quickly. A node that
	// restarts in process (its disk filled and has room again) calls
	// OnStopped, then OnStarted and the rest again for its new manager.
	Listener manager.Listener
	// Logger receives the node's logs (default slog.Default()).
	Logger *slog.Logger
	// Edge makes the node an edge site or a hub node (see EdgeConfig).
	Edge EdgeConfig
	// wrapStores, set by tests, wraps the tables' store provider (to count
	// reads, say).
	wrapStores func(store.Provider) store.Provider
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("node name: none given and no host name: %v", err)
		}
		c.Name = h
	}
	if c.App == "" {
		c.App = "edgetables"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.NATSListen == "" {
		c.NATSListen = "127.0.0.1:4222"
	}
	if c.HTTPListen == "" {
		c.HTTPListen = "127.0.0.1:8080"
	}
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if len(c.Routes) > 0 && c.ClusterListen == "" {
		return errors.New("node: Routes need ClusterListen")
	}
	if c.ClusterListen != "" && len(c.NATSURLs) > 0 {
		return errors.New("node: an embedded cluster (ClusterListen) and external NATS (NATSURLs) exclude each other")
	}
	if c.Replicas == 0 {
		c.Replicas = 1
		if n := distinct(c.Routes); c.ClusterListen != "" && n >= 3 {
			c.Replicas = 3
		}
	}
	switch {
	case c.Standbys == 0:
		c.Standbys = 1
	case c.Standbys < 0:
		c.Standbys = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.TombstoneTTL == 0:
		c.TombstoneTTL = jetstream.DefaultTombstoneTTL
	case c.TombstoneTTL < 0:
		c.TombstoneTTL = 0 // for ever: no TTL
	case c.TombstoneTTL < time.Second:
		return fmt.Errorf("--tombstone-ttl %s: want at least 1s (0: keep tombstones for ever)", c.TombstoneTTL)
	}
	if err := c.resolveStorage(); err != nil {
		return err
	}
	if err := c.Edge.setDefaults(c); err != nil {
		return err
	}
	if len(c.Agents) == 0 {
		return errors.New("node: no tables: give at least one --table (or an agent in Go)")
	}
	for _, name := range c.ResetTables {
		if !slices.ContainsFunc(c.Tables, func(t manager.Collection) bool { return t.Name() == name }) {
			return fmt.Errorf("--reset-table %s: not a table of this node (declare it with its new spec)", name)
		}
	}
	return nil
}

// MaxCommitRecords returns the manager.Config.MaxCommitRecords a node
// uses on servers at the default max_batch_size (a cluster, NATSURLs):
// none at least once, a full atomic batch less a headroom exactly once. A
// standalone node commits up to its embedded server's larger limit
// (jetstream.CommitLimits of jetstream.EmbeddedMaxAtomicBatch).
func MaxCommitRecords(exactlyOnce bool) int { return jetstream.MaxCommitRecords(exactlyOnce) }

// wantedMaxBatch returns the atomic batch size the node asks its
// changelog for (ChangelogConfig.MaxBatch): its embedded server's own
// max_batch_size when that server is its only one (no cluster, no
// NATSURLs), so no other server, such as a node of an older edgetables
// during a rolling upgrade, can ever lead its streams; else 0, the
// servers' default (jetstream.MaxAtomicBatch).
func (n *Node) wantedMaxBatch() int {
	srv := n.server()
	if n.cfg.clustered() || srv == nil {
		return 0
	}
	return srv.MaxAtomicBatch()
}

// clustered reports whether the node joins a consumer group.
func (c *Config) clustered() bool { return c.ClusterListen != "" || len(c.NATSURLs) > 0 }

func distinct(ss []string) int {
	seen := map[string]bool{}
	for _, s := range ss {
		seen[s] = true
	}
	return len(seen)
}

// Node is one edgetables process.
type Node struct {
	cfg Config
	log *slog.Logger

	started   chan struct{}
	startOnce sync.Once

	mu        sync.Mutex
	clientURL string
	httpAddr  string
	m         *manager.TableManager

	changelog *jetstream.Changelog // set by newManager, for Run's end
	group     *jetstream.Group     // set by newManager in a cluster

	// Set by Run before the API serves: the embedded server (nil with
	// NATSURLs), a site's hub hold, the source.
	srv    *jetstream.Server
	hold   *jetstream.HubHold
	source *jetstream.Source
	// siteTables: a hub node's copy of its sites' table changelogs.
	siteTables *jetstream.SiteTables
	// storage watches the embedded server's storage (nil with NATSURLs).
	storage *storageWatch
	// nc is the node's NATS connection, set by Run before the API serves.
	nc *nats.Conn
}

// server returns the embedded server (nil with external NATS).
func (n *Node) server() *jetstream.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// NewNode checks cfg and returns a node to Run.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, log: cfg.Logger, started: make(chan struct{})}, nil
}

// Started is closed when the NATS server and the HTTP API listen (tables
// may still be recovering; see Manager().Ready()).
func (n *Node) Started() <-chan struct{} { return n.started }

// ClientURL returns the embedded NATS server's client URL once started.
func (n *Node) ClientURL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.clientURL
}

// HTTPAddr returns the HTTP API's address once started ("" when off).
func (n *Node) HTTPAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.httpAddr
}

// Manager returns the table manager once started (nil before).
func (n *Node) Manager() *manager.TableManager {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m
}

// Run starts the node and blocks until ctx ends (then it commits, stops
// and returns nil, also when ctx ends before the node has started) or a
// fatal error occurs. It first locks the data
// directory, before it touches anything in it, and holds the lock until it
// returns: while another node holds it, Run returns an error wrapping
// ErrDataDirLocked at once. It then reads the app's metadata (or records
// it, for a new app) and returns an error wrapping ErrAppShape if the node
// does not fit it.
func (n *Node) Run(ctx context.Context) error {
	pause := time.Duration(0)
	for {
		err := n.runOnce(ctx)
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped while starting: a stop, not a failure.
			return nil
		}
		if !errors.Is(err, errStorageRestart) || ctx.Err() != nil {
			return err
		}
		// The disk filled and has room again: nats-server keeps a stream's
		// write error until it restarts, so the node starts again, in
		// process, from its data directory (its stores and JetStream's
		// files are as the crash of a process would leave them). Restarts
		// in a row wait longer, in case the disk keeps failing.
		pause = min(max(2*pause, time.Second), time.Minute)
		n.log.Warn("restarting the node: the disk has room again and JetStream keeps its write errors until its server restarts", "in", pause)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// runOnce is one life of the node: Run, until it stops or needs a restart
// (errStorageRestart).
func (n *Node) runOnce(parent context.Context) (err error) {
	ctx, cancel := context.WithCancelCause(jetstream.WithLogger(parent, n.log))
	defer cancel(nil)
	defer func() {
		if errors.Is(context.Cause(ctx), errStorageRestart) && parent.Err() == nil {
			err = errStorageRestart
		}
	}()
	cfg := n.cfg
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock() // last: after the server and the stores are closed
	nc, clientURL, stopNATS, err := n.connect(ctx)
	if err != nil {
		return err
	}
	defer stopNATS()
	if n.storage != nil {
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		n.storage.restart = func() { cancel(errStorageRestart) }
		go func() { defer close(watched); n.storage.run(wctx) }()
		defer func() { stopWatch(); <-watched }()
	}
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return fmt.Errorf("JetStream context: %w", err)
	}
	if err := jetstream.WaitForJetStream(ctx, js); err != nil {
		return fmt.Errorf("wait for JetStream: %w", err)
	}
	// The app's recorded shape first: a node that does not fit it stops
	// before it creates or changes any stream, store or group state. Its
	// source subjects before that: a first start refused for them must not
	// record the app's shape, which the next start, with the subjects
	// corrected, would then be refused for.
	if err := jetstream.CheckSource(ctx, js, n.sourceConfig()); err != nil {
		return err
	}
	if err := n.checkApp(ctx, js); err != nil {
		return err
	}
	if n.hold, err = n.siteHold(ctx, nc); err != nil {
		return err
	}
	if n.hold != nil {
		hctx, stopHold := context.WithCancel(ctx)
		held := make(chan struct{})
		go func() {
			defer close(held)
			n.hold.Run(hctx)
		}()
		defer func() { stopHold(); <-held }()
	}

	ln, httpAddr, err := n.listenHTTP()
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	m, err := n.newManager(ctx, js, httpAddr)
	if n.changelog != nil {
		defer n.changelog.Close() // before the connection closes
	}
	if err != nil {
		return err
	}
	if srv := n.server(); srv != nil && n.group != nil && srv.ClusterAddr() != "" {
		// A peer that crashed loses its leases at once, not when they
		// expire.
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			jetstream.WatchCrashes(wctx, srv, n.group, jetstream.CrashWatchConfig{Logger: n.log})
		}()
		defer func() { stopWatch(); <-watched }()
	}
	siteTables, stopSiteTables, err := n.startSiteTables(ctx, js)
	if err != nil {
		return err
	}
	defer stopSiteTables()
	n.siteTables = siteTables
	router := httpapi.NewRouter(m, nil, "")
	if cfg.clustered() {
		router = httpapi.NewRouter(m, nc, cfg.App)
	}
	if ln != nil {
		defer n.serveHTTP(ctx, ln, m, js, clientURL, router, siteTables)()
	}
	if cfg.clustered() {
		// Routed reads reach this node's stores over NATS.
		stopQueries, err := jetstream.ServeQueries(nc, cfg.App, cfg.Name, router.Serve)
		if err != nil {
			return fmt.Errorf("serve routed queries: %w", err)
		}
		defer stopQueries()
	}
	n.mu.Lock()
	n.clientURL, n.httpAddr, n.m, n.nc = clientURL, httpAddr, m, nc
	n.mu.Unlock()
	n.startOnce.Do(func() { close(n.started) })
	n.log.Info("node started", "name", cfg.Name, "app", cfg.App, "nats", clientURL, "http", httpAddr,
		"data_dir", cfg.DataDir, "partitions", m.Partitions(), "clustered", cfg.clustered(), "replicas", cfg.Replicas)
	return m.Run(ctx)
}

// serverConfig is the embedded server's configuration.
func (n *Node) serverConfig() jetstream.ServerConfig {
	cfg := n.cfg
	return jetstream.ServerConfig{
		Name: cfg.Name, Listen: cfg.NATSListen, StoreDir: cfg.DataDir, SyncAlways: cfg.SyncAlways,
		ClusterName: cfg.ClusterName, ClusterListen: cfg.ClusterListen, Routes: cfg.Routes,
		MaxStore: cfg.MaxStore, MaxMemory: cfg.MaxMemory,
		Logger: n.log.With("component", "nats"), Security: cfg.NATSSecurity,
		App: cfg.App, SourceSubjects: manager.SubjectsOf(cfg.Agents),
		Leaf: n.leafConfig(), ElectionTimeout: cfg.ElectionTimeout,
	}
}

// CheckServer checks the embedded server's configuration as Run would
// before it starts the server (listen addresses, users and TLS files,
// cluster and leaf settings, a port open beyond loopback without
// authentication), starting nothing. With NATSURLs there is no embedded
// server: it returns nil.
func (n *Node) CheckServer() error {
	if len(n.cfg.NATSURLs) > 0 {
		return nil
	}
	return jetstream.CheckServerConfig(n.serverConfig())
}

// connect starts the embedded server (alone or as a cluster node) and
// connects to it, or connects to external NATS. stop closes what it opened.
func (n *Node) connect(ctx context.Context) (nc *nats.Conn, url string, stop func(), err error) {
	cfg := n.cfg
	if len(cfg.NATSURLs) > 0 {
		opts := cfg.NATS
		if opts.Name == "" {
			opts.Name = "edgetables-" + cfg.Name
		}
		if opts.Logger == nil {
			opts.Logger = n.log.With("component", "nats")
		}
		nc, err = jetstream.ConnectExternal(ctx, cfg.NATSURLs, opts)
		if err != nil {
			return nil, "", nil, fmt.Errorf("connect to NATS at %v: %w", cfg.NATSURLs, err)
		}
		return nc, nc.ConnectedUrlRedacted(), nc.Close, nil
	}
	srv, err := jetstream.StartServer(ctx, n.serverConfig())
	if err != nil {
		return nil, "", nil, fmt.Errorf("start NATS server: %w", err)
	}
	nc, err = srv.ConnectNode("edgetables-" + cfg.Name)
	if err != nil {
		srv.Shutdown()
		return nil, "", nil, fmt.Errorf("connect to NATS: %w", err)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	n.storage = &storageWatch{srv: srv, dataDir: cfg.DataDir, log: n.log.With("component", "storage")}
	return nc, srv.ClientURL(), func() { nc.Close(); srv.Shutdown() }, nil
}

// sourceConfig is the configuration of the app's source stream.
func (n *Node) sourceConfig() jetstream.SourceConfig {
	cfg := n.cfg
	return jetstream.SourceConfig{App: cfg.App, Subjects: manager.SubjectsOf(cfg.Agents),
		Consumer: cfg.Name, MaxBytes: cfg.SourceMaxBytes, Replicas: cfg.Replicas, Sites: cfg.Edge.Sites,
		Logger: n.log.With("component", "source")}
}

// newManager creates the NATS resources and the table manager.
func (n *Node) newManager(ctx context.Context, js natsjs.JetStream, httpAddr string) (*manager.TableManager, error) {
	cfg := n.cfg
	changelog, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: cfg.App, Partitions: cfg.Partitions,
		Replicas: cfg.Replicas, Atomic: cfg.ExactlyOnce, TombstoneTTL: cfg.TombstoneTTL, MaxBatch: n.wantedMaxBatch(),
		Logger: n.log.With("component", "changelog")})
	if err != nil {
		return nil, err
	}
	n.changelog = changelog
	source, err := jetstream.NewSource(ctx, js, n.sourceConfig())
	if err != nil {
		return nil, err
	}
	n.source = source
	dlq, err := jetstream.NewDeadLetterQueue(ctx, js, jetstream.DeadLetterConfig{App: cfg.App, Replicas: cfg.Replicas, MaxBytes: cfg.deadLetterBytes})
	if err != nil {
		return nil, err
	}
	var coord port.Coordinator
	if cfg.clustered() {
		probe := ""
		if srv := n.server(); srv != nil {
			probe = srv.ClusterAddr()
		}
		group, err := jetstream.NewGroup(ctx, js, jetstream.GroupConfig{App: cfg.App, Node: cfg.Name,
			SessionTimeout: cfg.SessionTimeout, Replicas: cfg.Replicas, Probe: probe, Logger: n.log})
		if err != nil {
			return nil, err
		}
		coord, n.group = group, group
	}
	var global port.GlobalLog // nil without global tables: no stream
	if slices.ContainsFunc(cfg.Tables, func(c manager.Collection) bool { return manager.ShapeOf(c).Kind == manager.KindGlobal }) {
		gl, err := jetstream.NewGlobalLog(ctx, js, jetstream.GlobalConfig{App: cfg.App, Replicas: cfg.Replicas, TombstoneTTL: cfg.TombstoneTTL})
		if err != nil {
			return nil, err
		}
		global = gl
	}
	var stores store.Provider = store.NewDir(filepath.Join(cfg.DataDir, "tables"), nil)
	if cfg.wrapStores != nil {
		stores = cfg.wrapStores(stores)
	}
	maxRecords, capacity := jetstream.CommitLimits(cfg.ExactlyOnce, changelog.MaxBatch())
	m, err := manager.New(manager.Config{
		Node: cfg.Name, Partitions: cfg.Partitions, CommitInterval: cfg.CommitInterval,
		CommitEvery: cfg.CommitEvery, CommitIdle: cfg.CommitIdle, RecoveryBufferSize: cfg.RecoveryBufferSize, StandbyBufferSize: cfg.StandbyBufferSize,
		KeepSource: cfg.KeepSource, SourceHold: n.sourceHold(),
		Changelog: changelog, Source: source, DeadLetters: dlq, Coordinator: coord,
		SessionTimeout: cfg.SessionTimeout, Standbys: cfg.Standbys, HTTPAddr: httpAddr,
		MaxCommitRecords: maxRecords,
		CommitCapacity:   capacity,
		MaxRecordBytes:   jetstream.MaxRecordBytes(js.Conn()),
		RecoveryHooks:    cfg.RecoveryHooks,
		Listener:         cfg.Listener,
		ChangelogBehind:  cfg.ChangelogBehind,
		Stores:           stores,
		Global:           global,
		GlobalStores:     store.NewDir(filepath.Join(cfg.DataDir, "global"), nil),
		Logger:           n.log,
	})
	if err != nil {
		return nil, err
	}
	for _, t := range cfg.Tables {
		if err := m.Add(t); err != nil {
			return nil, err
		}
	}
	for _, a := range cfg.Agents {
		if err := m.AddAgent(a); err != nil {
			return nil, err
		}
	}
	return m, nil
}
