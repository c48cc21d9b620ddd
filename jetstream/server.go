package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Defaults of ServerConfig.
const (
	DefaultListen    = "127.0.0.1:4222"
	DefaultMaxMemory = 256 << 20 // 256 MiB
	DefaultMaxStore  = 8 << 30   // 8 GiB
)

// readyTimeout bounds the wait for the server's listeners.
const readyTimeout = 5 * time.Second

// defaultJetStreamWait bounds StartServer's wait for JetStream when ctx has
// no deadline.
const defaultJetStreamWait = 30 * time.Second

// ServerConfig configures the embedded nats-server.
//
// Cluster routes, leaf node remotes, the JetStream domain and TLS/auth will
// be added here later; until then the server is a single node without
// authentication, so Listen should stay on a loopback or private address.
type ServerConfig struct {
	// Name is the server name. It must be stable across restarts (a cluster
	// identifies its peers by name). Default: the host name, or
	// "edgetables" if that is unknown.
	Name string
	// Listen is the client address as "host:port"; port 0 picks a free
	// port (see Server.ClientURL). Default: "127.0.0.1:4222".
	Listen string
	// StoreDir is the JetStream storage directory. Required.
	StoreDir string
	// SyncAlways makes the server fsync every write before acknowledging
	// it. Default false: the server syncs on its interval (2 minutes), so
	// a power loss can lose acknowledged writes; an OS-level crash of the
	// process alone does not.
	SyncAlways bool
	// MaxMemory is the JetStream memory limit in bytes. Default 256 MiB
	// (unset, the server would claim 75% of RAM).
	MaxMemory int64
	// MaxStore is the JetStream storage limit in bytes. Default 8 GiB
	// (unset, the server would claim 75% of the free disk).
	MaxStore int64
	// Logger receives the server's log. Default slog.Default().
	Logger *slog.Logger
}

// Server is an embedded nats-server with JetStream enabled.
type Server struct {
	ns   *server.Server
	log  *slog.Logger
	once sync.Once
}

// StartServer starts an embedded nats-server and returns when it accepts
// clients and JetStream answers requests, or with an error (then the
// server is shut down). Startup failures the server only logs, such as an
// address in use or a store it cannot open, are returned wrapping
// ErrServerStart. The wait for JetStream ends with ctx, or after 30 s if ctx
// has no deadline.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("edgetables/jetstream: ServerConfig.StoreDir is required")
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("edgetables/jetstream: listen address %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // to nats-server, 0 means 4222
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrServerStart, err)
	}
	log := cfg.Logger.With("component", "nats-server", "server", cfg.Name)
	adapter := &logAdapter{log: log}
	debug := log.Enabled(ctx, slog.LevelDebug)
	ns.SetLoggerV2(adapter, debug, false, false)

	s := &Server{ns: ns, log: log}
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
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("edgetables-startup"))
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
	log.Info("nats-server ready", "url", ns.ClientURL(), "store", cfg.StoreDir, "sync_always", cfg.SyncAlways)
	return s, nil
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

// NATSServer returns the underlying nats-server, for monitoring and tests.
func (s *Server) NATSServer() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped. It is
// idempotent and safe for concurrent use.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

// Connect opens a client connection to the server over TCP (ClientURL),
// named name. It reconnects to the same server without limit, and logs
// disconnects, reconnects and asynchronous errors (such as a slow consumer).
func (s *Server) Connect(name string) (*nats.Conn, error) {
	log := s.log.With("conn", name)
	nc, err := nats.Connect(s.ClientURL(),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: connect %s to %s: %w", name, s.ClientURL(), err)
	}
	return nc, nil
}

// logAdapter sends nats-server's log to slog. Fatalf does not exit: it logs
// at error level and records the first fatal error for StartServer.
type logAdapter struct {
	log *slog.Logger
	mu  sync.Mutex
	err error
}

func (l *logAdapter) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logAdapter) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, "fatal", true)
	l.mu.Lock()
	if l.err == nil {
		l.err = fmt.Errorf("%w: %s", ErrServerStart, msg)
	}
	l.mu.Unlock()
}
