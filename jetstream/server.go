package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

// Defaults of ServerConfig.
const (
	DefaultListen    = "127.0.0.1:4222"
	DefaultMaxMemory = 256 << 20 // 256 MiB
	DefaultMaxStore  = 8 << 30   // 8 GiB
	// DefaultClusterName is the cluster name when ServerConfig.ClusterName
	// is empty.
	DefaultClusterName = "edgetables"
)

// readyTimeout bounds the wait for the server's listeners.
const readyTimeout = 5 * time.Second

// defaultJetStreamWait bounds StartServer's wait for JetStream when ctx has
// no deadline.
const defaultJetStreamWait = 30 * time.Second

// ServerConfig configures the embedded nats-server.
//
// The server is a single node unless ClusterListen is set; then it is one
// node of a JetStream cluster (see ClusterListen). Security sets its users,
// roles and TLS; without them it is open, and StartServer refuses to listen
// beyond loopback (unless Security.Insecure). Leaf node remotes and the
// JetStream domain will be added here later.
type ServerConfig struct {
	// Name is the server name. It must be stable across restarts (a cluster
	// identifies its peers by name) and unique within a cluster. Default:
	// the host name, or "edgetables" if that is unknown; required when
	// ClusterListen is set, so a node never changes name with its host.
	Name string
	// ClusterName names the cluster; every node of a cluster must use the
	// same. Used only with ClusterListen. Default "edgetables".
	ClusterName string
	// ClusterListen is the route address as "host:port" on which the other
	// nodes of the cluster connect to this one (port 0 picks a free port,
	// which the other nodes then cannot know). Setting it makes the server
	// a cluster node: JetStream elects a meta leader once a majority of the
	// nodes is up, so StartServer of the first node returns only when
	// enough others have started too: start them concurrently. Default ""
	// (a single node).
	ClusterListen string
	// Routes are the route URLs of the cluster's nodes
	// ("nats-route://host:port"); the same list can be given to every node,
	// since a node's route to itself is detected and dropped. Requires
	// ClusterListen. Each route is one TCP connection (a pool of them, in
	// fact) kept open to that node.
	Routes []string
	// Listen is the client address as "host:port"; port 0 picks a free
	// port (see Server.ClientURL). Default: "127.0.0.1:4222".
	Listen string
	// StoreDir is the JetStream storage directory. Required.
	StoreDir string
	// SyncAlways makes the server fsync every write before acknowledging
	// it (measured: about 4k instead of 120k publishes/s). Default false:
	// the server syncs on its interval (2 minutes), so a power loss or an
	// OS crash can lose acknowledged writes; a crash of the process alone
	// does not (the writes are in the OS page cache).
	SyncAlways bool
	// MaxMemory is the JetStream memory limit in bytes. Default 256 MiB
	// (unset, the server would claim 75% of RAM).
	MaxMemory int64
	// MaxStore is the JetStream storage limit in bytes. Default 8 GiB
	// (unset, the server would claim 75% of the free disk).
	MaxStore int64
	// MaxAtomicBatch is the server's max_batch_size: the most messages one
	// JetStream atomic batch may hold (exactly-once commits are one batch
	// each). Default EmbeddedMaxAtomicBatch, unless Security.ConfigFile
	// sets one (jetstream { limits { batch { max_msgs: N } } }).
	// Server.MaxAtomicBatch reports it.
	MaxAtomicBatch int
	// Logger receives the server's log. Default slog.Default().
	Logger *slog.Logger
	// Security configures users, roles and TLS (default: none, loopback
	// only).
	Security Security
	// App and SourceSubjects scope the roles of Security.Users: devices
	// publish to SourceSubjects only, readers query App's nodes.
	App            string
	SourceSubjects []string
	// Leaf makes the server a leaf node of a hub and names its JetStream
	// domain (see LeafConfig). Default: neither.
	Leaf LeafConfig
	// ElectionTimeout is how long a follower of a replicated stream,
	// consumer or the meta group waits without hearing from its leader
	// before it calls an election (a random wait between it and 2.25 times
	// it; leaders heartbeat every quarter of it). After a node's crash,
	// the streams it led take this long to accept writes again: a shorter
	// one makes failovers faster, at the cost of more heartbeats and of
	// needless elections when a loaded machine delays a few of them. It
	// is the process's, not the server's: every embedded server of a
	// process must use the same (ErrElectionTimeoutInUse). Default 0: the
	// server's own, 4 s; otherwise at least MinElectionTimeout.
	ElectionTimeout time.Duration
}

// Server is an embedded nats-server with JetStream enabled.
type Server struct {
	ns        *server.Server
	log       *slog.Logger
	once      sync.Once
	clustered bool
	id        *nodeIdentity // nil: the server has no authentication
	maxBatch  int           // the server's max_batch_size
}

// StartServer starts an embedded nats-server and returns when it accepts
// clients and JetStream answers requests, or with an error (then the
// server is shut down). Startup failures the server only logs, such as an
// address in use or a store it cannot open, are returned wrapping
// ErrServerStart. The wait for JetStream ends with ctx, or after 30 s if ctx
// has no deadline.
//
// In a cluster (ServerConfig.ClusterListen), "JetStream answers" means the
// cluster has elected its meta leader, so the caller may create streams at
// once. That needs a majority of the nodes running: a fresh 3-node cluster
// on loopback, its nodes started together, had its meta leader after about
// 1.1 s; 6 to 12 s when the first election round failed (seen under the race
// detector only).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	opts, id, err := serverOptions(&cfg)
	if err != nil {
		return nil, err
	}
	if err := acquireRaftTimers(cfg.ElectionTimeout); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerStart, err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		releaseRaftTimers()
		return nil, fmt.Errorf("%w: %w", ErrServerStart, err)
	}
	jsAccount := cfg.Security.Account
	if slices.ContainsFunc(opts.Accounts, func(a *server.Account) bool { return a.Name == ClientsAccount }) {
		if err := linkClientsAccount(ns, cfg.Security.Account, clientImports(cfg.App, cfg.SourceSubjects)); err != nil {
			releaseRaftTimers()
			return nil, err
		}
		if jsAccount == "" {
			// With accounts configured, nats-server enables JetStream
			// only for those that ask for it: not the global one.
			jsAccount = server.DEFAULT_GLOBAL_ACCOUNT
		}
	}
	log := cfg.Logger.With("component", "nats-server", "server", cfg.Name)
	adapter := &logAdapter{log: log}
	debug := log.Enabled(ctx, slog.LevelDebug)
	ns.SetLoggerV2(adapter, debug, false, false)

	s := &Server{ns: ns, log: log, clustered: cfg.ClusterListen != "", id: id, maxBatch: opts.JetStreamLimits.MaxBatchSize}
	fail := func(err error) (*Server, error) {
		s.Shutdown()
		return nil, err
	}
	ns.Start() // does not block; fatal errors come through the logger
	deadline := time.Now().Add(readyTimeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if err := adapter.fatal(); err != nil {
			return fail(err)
		}
		if err := ctx.Err(); err != nil {
			return fail(fmt.Errorf("edgetables/jetstream: starting server %s: %w", cfg.Name, err))
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%w: %s not ready for connections after %v", ErrServerStart, cfg.Name, readyTimeout))
		}
	}
	if err := adapter.fatal(); err != nil {
		return fail(err)
	}
	if !ns.JetStreamEnabled() {
		return fail(fmt.Errorf("%w: JetStream is not enabled on %s", ErrServerStart, cfg.Name))
	}
	if err := enableAccountJetStream(ns, jsAccount); err != nil {
		return fail(err)
	}
	nc, err := nats.Connect("", s.inProcessOptions(nats.Name("edgetables-startup"))...)
	if err != nil {
		return fail(fmt.Errorf("%w: in-process connection: %w", ErrServerStart, err))
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrServerStart, err))
	}
	wctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, defaultJetStreamWait)
		defer cancel()
	}
	if err := WaitForJetStream(wctx, js); err != nil {
		if ferr := adapter.fatal(); ferr != nil {
			return fail(ferr)
		}
		return fail(fmt.Errorf("%w: %w", ErrServerStart, err))
	}
	if s.clustered {
		if err := adapter.awaitDuplicateName(ctx, duplicateNameSettle); err != nil {
			return fail(err)
		}
	}
	log.Info("nats-server ready", "url", ns.ClientURL(), "store", cfg.StoreDir, "sync_always", cfg.SyncAlways,
		"cluster", opts.Cluster.Name, "routes", len(opts.Routes), "auth", id != nil, "tls", opts.TLSConfig != nil,
		"route_auth", routesAuthenticated(opts))
	return s, nil
}

// CheckServerConfig checks cfg as StartServer would (addresses, security,
// cluster and leaf settings, and ports open beyond loopback without
// authentication) without starting anything.
func CheckServerConfig(cfg ServerConfig) error {
	_, _, err := serverOptions(&cfg)
	return err
}

// serverOptions fills cfg's defaults and returns the server's options and
// the node's identity (nil without authentication).
func serverOptions(cfg *ServerConfig) (*server.Options, *nodeIdentity, error) {
	if cfg.StoreDir == "" {
		return nil, nil, errors.New("edgetables/jetstream: ServerConfig.StoreDir is required")
	}
	if cfg.ClusterListen == "" && len(cfg.Routes) > 0 {
		return nil, nil, errors.New("edgetables/jetstream: ServerConfig.Routes needs ClusterListen")
	}
	if err := checkElectionTimeout(cfg.ElectionTimeout); err != nil {
		return nil, nil, err
	}
	if cfg.ClusterListen != "" && cfg.Name == "" {
		return nil, nil, errors.New("edgetables/jetstream: ServerConfig.Name is required with ClusterListen")
	}
	if cfg.ClusterListen != "" && !ClusterSupported {
		return nil, nil, ErrClusterUnsupported
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
		if cfg.Name == "" {
			cfg.Name = "edgetables"
		}
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = DefaultMaxStore
	}
	if cfg.MaxAtomicBatch < 0 {
		return nil, nil, fmt.Errorf("edgetables/jetstream: ServerConfig.MaxAtomicBatch must not be negative, got %d", cfg.MaxAtomicBatch)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, port, err := splitListen("listen", cfg.Listen)
	if err != nil {
		return nil, nil, err
	}
	opts := &server.Options{}
	if cfg.Security.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(cfg.Security.ConfigFile); err != nil {
			return nil, nil, fmt.Errorf("edgetables/jetstream: config file %s (--nats-config): %w", cfg.Security.ConfigFile, err)
		}
	}
	opts.ServerName, opts.Host, opts.Port = cfg.Name, host, port
	opts.JetStream, opts.StoreDir, opts.SyncAlways, opts.NoSigs = true, cfg.StoreDir, cfg.SyncAlways, true
	opts.JetStreamMaxMemory, opts.JetStreamMaxStore = cfg.MaxMemory, cfg.MaxStore
	switch {
	case cfg.MaxAtomicBatch > 0:
		opts.JetStreamLimits.MaxBatchSize = cfg.MaxAtomicBatch
	case opts.JetStreamLimits.MaxBatchSize <= 0: // not set by the config file
		opts.JetStreamLimits.MaxBatchSize = EmbeddedMaxAtomicBatch
	}
	id, err := applySecurity(cfg.Security, cfg.App, cfg.SourceSubjects, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := clusterOptions(*cfg, opts); err != nil {
		return nil, nil, err
	}
	if err := leafOptions(cfg.Leaf, opts); err != nil {
		return nil, nil, err
	}
	if err := checkExposure(cfg.Security, opts, cfg.Logger); err != nil {
		return nil, nil, err
	}
	return opts, id, nil
}

// splitListen parses a "host:port" listen address; port 0 becomes
// nats-server's "random port" (to nats-server, 0 means the default port).
func splitListen(what, addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("edgetables/jetstream: %s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("edgetables/jetstream: %s address %q: bad port", what, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// clusterOptions sets opts' cluster and routes from cfg (nothing when
// cfg.ClusterListen is empty).
func clusterOptions(cfg ServerConfig, opts *server.Options) error {
	if cfg.ClusterListen == "" {
		return nil
	}
	host, port, err := splitListen("cluster listen", cfg.ClusterListen)
	if err != nil {
		return err
	}
	name := cfg.ClusterName
	if name == "" {
		name = DefaultClusterName
	}
	opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = name, host, port
	opts.Routes = nil
	for _, r := range cfg.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil {
			return fmt.Errorf("edgetables/jetstream: route %q (--routes): %w", r, err)
		}
		if (u.Scheme != "nats-route" && u.Scheme != "nats") || u.Host == "" || u.Port() == "" {
			return fmt.Errorf("edgetables/jetstream: route %q (--routes): want nats-route://host:port", r)
		}
		if u.User == nil && opts.Cluster.Username != "" {
			// The routes this node dials present the cluster's credentials.
			u.User = url.UserPassword(opts.Cluster.Username, opts.Cluster.Password)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// WaitForJetStream polls js.AccountInfo until it succeeds (JetStream is
// enabled and, in a cluster, has a meta leader) or ctx ends. It costs one
// request every 50 ms.
func WaitForJetStream(ctx context.Context, js natsjs.JetStream) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(rctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("edgetables/jetstream: waiting for JetStream: %w (last error: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// ClientURL is the URL clients connect to, with the port actually bound.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// ClusterAddr is the route address ("host:port") the server listens on
// for its cluster's other nodes, "" when it is not a cluster node. It is
// the node's probe address (GroupConfig.Probe): nothing else in the
// process listens there.
func (s *Server) ClusterAddr() string {
	if a := s.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// MaxAtomicBatch returns the server's max_batch_size: the most messages
// one JetStream atomic batch may hold on it (ServerConfig.MaxAtomicBatch).
// It is what a node that is the server's only writer, not part of a
// cluster, gives its changelog (ChangelogConfig.MaxBatch).
func (s *Server) MaxAtomicBatch() int { return s.maxBatch }

// NATSServer returns the underlying nats-server, for monitoring and tests.
func (s *Server) NATSServer() *server.Server { return s.ns }

// leaderHandoff bounds how long Shutdown waits for a cluster node's raft
// groups to elect leaders elsewhere (the server waits 1 s after asking).
const leaderHandoff = 2 * time.Second

// Shutdown stops the server and waits until it has stopped. It is
// idempotent and safe for concurrent use.
//
// A cluster node first hands the leadership of its streams, consumers and
// the JetStream meta group to the other nodes (the server's lame duck
// mode, cut short after leaderHandoff): without it, the others wait for
// an election timeout (seconds) before they can write to the streams this
// node led.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		var ldm chan struct{}
		if s.clustered {
			ldm = make(chan struct{})
			go func() {
				defer close(ldm)
				s.ns.LameDuckShutdown()
			}()
			select {
			case <-ldm:
			case <-time.After(leaderHandoff):
			}
		}
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		if ldm != nil {
			<-ldm // returns once the server has quit
		}
		releaseRaftTimers()
	})
}

// Connect opens a client connection to the server over TCP (ClientURL),
// named name, without credentials: for tests and tools on a server without
// authentication (see ConnectNode). It reconnects without limit (to this
// server or, in a cluster, to the other nodes it learns of), and logs
// disconnects, reconnects and asynchronous errors (such as a slow consumer).
func (s *Server) Connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(s.ClientURL(), connOptions(s.log.With("conn", name), name)...)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: connect %s to %s: %w", name, s.ClientURL(), err)
	}
	return nc, nil
}

// duplicateNameSettle is how long a starting cluster node, once JetStream
// answers, watches its routes for another server with its name. Routes to
// the configured and gossiped peers connect within milliseconds on a LAN;
// the group's check of member instances (manager.ErrDuplicateNode) catches
// what this misses, seconds later.
const duplicateNameSettle = time.Second

// ConnectNode opens an in-process client connection to the server, named
// name, with the node's identity: every right and, when the server has
// authentication, an NKey created at this start and accepted only on
// in-process connections, so that no network client can pose as the node.
// Like Connect, it logs disconnects, reconnects and asynchronous errors; it
// lives as long as this server (it does not follow a restart).
func (s *Server) ConnectNode(name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", s.inProcessOptions(connOptions(s.log.With("conn", name), name)...)...)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: connect %s in process: %w", name, err)
	}
	return nc, nil
}

// inProcessOptions are opts with the in-process transport and the node's
// identity.
func (s *Server) inProcessOptions(opts ...nats.Option) []nats.Option {
	opts = append(opts, nats.InProcessServer(s.ns))
	if s.id != nil {
		opts = append(opts, nats.Nkey(s.id.pub, s.id.kp.Sign))
	}
	return opts
}

// logAdapter sends nats-server's log to slog. Fatalf does not exit: it logs
// at error level and records the first fatal error for StartServer. It also
// records the first route refused because the remote server has this
// server's name (nats-server has no other signal for it).
type logAdapter struct {
	log      *slog.Logger
	mu       sync.Mutex
	err      error
	dup      string    // the first duplicate-name message
	authHint time.Time // when the route credentials hint was last logged
}

// routeAuthHintEvery is the most often the hint on a refused route's
// credentials is logged.
const routeAuthHintEvery = 5 * time.Minute

// isRouteAuthFailure reports whether a nats-server v2.15.2 error line is a
// route refused for its credentials: "rid:N - authentication error" where
// a route came in, "rid:N - Route Error 'Authorization Violation'" where
// it was dialed.
func isRouteAuthFailure(msg string) bool {
	return strings.Contains(msg, " - rid:") &&
		(strings.HasSuffix(msg, "authentication error") || strings.Contains(msg, "'Authorization Violation'"))
}

// duplicateNameMessage is how nats-server v2.15.2 logs (server/route.go:
// client.processRouteInfo) a route whose remote server has this server's
// name; TestDuplicateServerNameRefused fails if a new version says it
// differently.
const duplicateNameMessage = "Remote server has a duplicate name"

// awaitDuplicateName waits up to d for a duplicate-name route and returns
// an error wrapping manager.ErrDuplicateNode if one was seen.
func (l *logAdapter) awaitDuplicateName(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		dup := l.dup
		l.mu.Unlock()
		if dup != "" {
			return fmt.Errorf("%w: another server of the NATS cluster runs under this name (%s); stop one of them, or give each its own --name",
				port.ErrDuplicateNode, dup)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			return nil
		case <-tick.C:
		}
	}
}

func (l *logAdapter) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	if strings.Contains(msg, duplicateNameMessage) {
		l.mu.Lock()
		if l.dup == "" {
			l.dup = msg
		}
		l.mu.Unlock()
	}
	if isRouteAuthFailure(msg) {
		l.mu.Lock()
		hint := time.Since(l.authHint) >= routeAuthHintEvery
		if hint {
			l.authHint = time.Now()
		}
		l.mu.Unlock()
		if hint {
			l.log.Warn("a cluster route was refused for its credentials: every node of the cluster needs the same --cluster-password-file " +
				"(or EDGETABLES_CLUSTER_PASSWORD) and --cluster-user; a node without a password accepts routes from anyone, and the nodes with one refuse it")
		}
	}
}
func (l *logAdapter) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	l.mu.Lock()
	if l.err == nil {
		l.err = fmt.Errorf("%w: %s", ErrServerStart, msg)
	}
	l.mu.Unlock()
}
