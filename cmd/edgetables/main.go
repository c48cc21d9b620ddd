// Command edgetables runs Faust-style tables on NATS JetStream: durable,
// queryable, partitioned key/value state built from event streams, in one
// binary with an embedded NATS server.
//
//	edgetables run --table name=temps,source=sensors.*.temp,key=subject:2,agg=max,field=value
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// exitUsage is the exit status for invalid flags.
const exitUsage = 2

// maxBufferRecords bounds --recovery-buffer-size and --standby-buffer-size:
// beyond a million records a store transaction gains nothing, and the
// buffer is memory.
const maxBufferRecords = 1_000_000

type cli struct {
	LogLevel  string `help:"Log level: debug, info, warn, error." default:"info" enum:"debug,info,warn,error"`
	LogFormat string `help:"Log format: text or json." default:"text" enum:"text,json"`

	Run     runCmd     `cmd:"" help:"Run a node: embedded NATS server with JetStream, tables, HTTP API."`
	Check   checkCmd   `cmd:"" help:"Check a node's configuration (the flags, environment and --config file of run) without starting anything."`
	Status  statusCmd  `cmd:"" help:"Show a node's status: members, leader, generation, partitions."`
	Bench   benchCmd   `cmd:"" help:"Measure edgetables against raw JetStream and NATS KV in one run; prints a Markdown table."`
	Passwd  passwdCmd  `cmd:"" help:"Print the bcrypt hash of a password read from stdin (for --nats-auth)."`
	Version versionCmd `cmd:"" help:"Print the version."`
}

// tableFlag is one --table value.
type tableFlag struct{ builtin.TableSpec }

// UnmarshalText parses a table spec (kong reports its error under the flag).
func (t *tableFlag) UnmarshalText(b []byte) error {
	s, err := builtin.ParseTableSpec(string(b))
	if err != nil {
		return err
	}
	// The name's rules are the manager's: check them here, before anything
	// starts, not when the node builds its tables.
	if err := manager.ValidateTableName(s.Name); err != nil {
		return fmt.Errorf("%w %q: %w", builtin.ErrSpec, string(b), err)
	}
	t.TableSpec = s
	return nil
}

// globalTableFlag is one --global-table value: a table name.
type globalTableFlag struct{ name string }

// UnmarshalText checks the name (kong reports its error under the flag).
func (g *globalTableFlag) UnmarshalText(b []byte) error {
	if err := manager.ValidateTableName(string(b)); err != nil {
		return err
	}
	g.name = string(b)
	return nil
}

type runCmd struct {
	Config          string            `help:"Configuration file (YAML or JSON) holding any of these flags, one key per flag (data-dir: ./data, table: [...]); flags and EDGETABLES_* variables override it." type:"existingfile" placeholder:"FILE"`
	MemoryLimit     memoryLimit       `name:"memory-limit" help:"Soft memory limit of the Go runtime (runtime/debug.SetMemoryLimit), e.g. 400MiB. auto: GOMEMLIMIT if set, else 80% of the cgroup's memory cap if there is one (systemd MemoryMax, a container's memory limit), else none. 0: none (GOMEMLIMIT applies if set)." default:"auto" placeholder:"SIZE"`
	GCPercent       int               `name:"gc-percent" help:"Garbage collection target of the Go runtime (runtime/debug.SetGCPercent): the heap grows this many percent over the live heap before a collection. 0: 50, or GOGC if set." default:"0" placeholder:"PERCENT"`
	Name            string            `help:"Node name, stable across restarts (default: the host name)."`
	App             string            `help:"Namespace of every NATS resource." default:"edgetables"`
	DataDir         string            `help:"Directory for JetStream storage and table stores; one node per directory (a second one exits)." default:"./data"`
	NATSListen      string            `name:"nats-listen" help:"Embedded NATS server client address (port 0: any free port)." default:"127.0.0.1:4222"`
	HTTPListen      string            `name:"http-listen" help:"HTTP API address ('off' disables it)." default:"127.0.0.1:8080"`
	Console         bool              `help:"Serve the operator's console at / of the HTTP API, and its history at /v1/history (--console=false or --no-console: off)." default:"true" negatable:""`
	Partitions      int               `help:"Partitions of every table (fixed for an app)." default:"8"`
	CommitInterval  time.Duration     `help:"Longest time between commits while the source has a backlog (see --commit-idle)." default:"250ms"`
	CommitEvery     int               `help:"Commit after this many events even before the interval ends." default:"50000"`
	CommitIdle      time.Duration     `help:"Commit as soon as the node has read everything the source holds and nothing more came for this long, 100ms after the last commit at the soonest, without waiting for --commit-interval (0: off)." default:"20ms"`
	RecoveryBuffer  int               `name:"recovery-buffer-size" help:"Changelog records a recovering partition holds in memory: it reads half of them while it writes the other half to its store (at most that many per store transaction)." default:"10000"`
	StandbyBuffer   int               `name:"standby-buffer-size" help:"Changelog records per store transaction of a standby (it lags its active by at most this many while the log grows)." default:"1000"`
	Sync            string            `help:"JetStream fsync policy: 'always' (every write reaches the disk before it is acknowledged) or 'interval' (the server's periodic sync)." default:"interval" enum:"always,interval"`
	Guarantee       string            `name:"processing-guarantee" help:"at-least-once, or exactly-once (each commit is one atomic JetStream batch: no event counted twice, even across crashes)." default:"at-least-once" enum:"at-least-once,exactly-once"`
	KeepSource      bool              `help:"Keep committed events in the source stream (default: remove them once committed)."`
	SourceMaxBytes  byteSize          `help:"Largest size of the source stream (bytes, or e.g. 256MiB); when full, JetStream publishers get errors. 0: a quarter of --max-store, at most 1GiB; at most half of --max-store." default:"0" placeholder:"SIZE"`
	MaxStore        byteSize          `help:"JetStream disk limit of the embedded server (e.g. 200MiB, 4GiB); beyond it publishes and commits fail and /readyz says so until space is freed. 0: half of the data directory's free disk (JetStream data included), the rest left for the table stores." default:"0" placeholder:"SIZE"`
	MaxMemory       byteSize          `help:"JetStream memory limit of the embedded server (its streams are on disk; this bounds memory streams). 0: 256MiB." default:"0" placeholder:"SIZE"`
	Table           []tableFlag       `help:"Built-in table: name=NAME,source=SUBJECT,key=subject:N|json:FIELD,agg=count|sum|min|max|avg|latest|set[,field=FIELD][,window=DURATION[,hop=DURATION][,expires=DURATION][,time=json:FIELD|header:NAME|stream|now][,tombstone-ttl=DURATION|forever]]. NAME: lower-case letters, digits, '_' and '-'. Repeatable; in EDGETABLES_TABLE, specs are separated by ';'." sep:";"`
	TombstoneTTL    time.Duration     `name:"tombstone-ttl" help:"How long the changelogs and the global stream keep a deleted key's tombstone; a node down longer rebuilds its stores by a full replay. 0: for ever (the log grows by one message per key ever deleted)." default:"24h"`
	MaxClockSkew    time.Duration     `help:"Windowed tables: how far ahead of this node's clock an event time may be (further: dead letter), and how far the clock may jump ahead and be followed at once (further: windows close by the clock as it ran before, until it comes back, event times confirm it, or it keeps the jump this long). 0: no bound." default:"1h"`
	GlobalTable     []globalTableFlag `name:"global-table" help:"Global table NAME: every node holds all of it; JSON values written with PUT/DELETE /v1/tables/NAME/keys/KEY on any node. Repeatable." placeholder:"NAME"`
	ResetTable      []string          `name:"reset-table" help:"Reset table NAME, declared with its new spec, if its spec differs from the one the app recorded or nodes ran without it: drop its records from the changelog and every node's stores, record the new spec, start it empty. Stop every other node first; remove the flag afterwards. Repeatable." placeholder:"NAME"`
	ChangelogBehind string            `name:"changelog-behind" help:"What to do with a partition whose changelog is behind its store (the stream was deleted, or restored from an older backup, while this node's store holds newer state): 'stop' (keep the store, stop the partition, /readyz says so), 'reseed' (write the store back into the changelog, then go on) or 'accept' (rebuild the store from the changelog as it is; newer state is dropped). Set it for one restart, then remove it." default:"stop" enum:"stop,reseed,accept"`

	ClusterName     string        `help:"Name of the embedded NATS cluster (the same on every node)." default:"edgetables" group:"cluster"`
	ClusterListen   string        `help:"Route address of the embedded server (host:port); makes the node a cluster member." group:"cluster"`
	Routes          []string      `help:"Route URLs of the cluster's nodes (nats-route://host:port), comma-separated; the same list on every node." group:"cluster"`
	Replicas        int           `help:"Replication of every stream and bucket (0: 1 alone, 3 in a cluster of 3 or more)." default:"0" group:"cluster"`
	Standbys        int           `help:"Standby replicas per partition in a cluster." default:"1" group:"cluster"`
	SessionTimeout  time.Duration `help:"How long a member that stopped heart-beating keeps its partitions: a node that hangs or is cut off. A node of an embedded cluster whose process is gone (its routes closed, its route port refuses connections) loses them at once." default:"5s" group:"cluster"`
	ElectionTimeout time.Duration `help:"Embedded server: how long a replica hears nothing from its stream's leader before it calls an election (a random wait up to 2.25 times it; heartbeats every quarter of it). After a crash, the streams the dead node led accept writes again only after it, so a failover takes at least this long when that node led the group's bucket. Shorter: faster failovers, more heartbeats, and needless elections when a loaded machine delays them. 0: nats-server's own, 4s; else at least 500ms." default:"0" group:"cluster"`
	NATSURL         []string      `name:"nats-url" help:"Use an existing NATS JetStream deployment at these URLs instead of the embedded server." group:"external NATS"`
	NATSCreds       string        `name:"nats-creds" help:"Credentials file for --nats-url." type:"existingfile" group:"external NATS"`
	NATSUser        string        `name:"nats-user" help:"User for --nats-url." group:"external NATS"`
	NATSCA          string        `name:"nats-ca" help:"CA file (PEM) that verifies the NATS servers' TLS certificates." type:"existingfile" group:"external NATS"`
	NATSCert        string        `name:"nats-cert" help:"Client certificate (PEM) for mutual TLS." type:"existingfile" group:"external NATS"`
	NATSKey         string        `name:"nats-key" help:"Client key (PEM) for mutual TLS." type:"existingfile" group:"external NATS"`

	httpSecurity
	securityFlags `embed:""`
	edgeFlags
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks what kong cannot; errors name the flag.
func (r *runCmd) Validate() error {
	switch {
	case r.Name != "" && !nameRE.MatchString(r.Name):
		return fmt.Errorf("--name %q: want letters, digits, '_' and '-', at most 64", r.Name)
	case !nameRE.MatchString(r.App):
		return fmt.Errorf("--app %q: want letters, digits, '_' and '-', at most 64", r.App)
	case r.Partitions < 1 || r.Partitions > 1024:
		return fmt.Errorf("--partitions %d: want 1 to 1024", r.Partitions)
	case r.CommitInterval <= 0:
		return fmt.Errorf("--commit-interval %s: must be positive", r.CommitInterval)
	case r.GCPercent < 0:
		return fmt.Errorf("--gc-percent %d: want 0 (the default) or more", r.GCPercent)
	case r.CommitIdle < 0:
		return fmt.Errorf("--commit-idle %s: want 0 (off) or more", r.CommitIdle)
	case r.CommitEvery < 1:
		return fmt.Errorf("--commit-every %d: must be at least 1", r.CommitEvery)
	case r.RecoveryBuffer < 1 || r.RecoveryBuffer > maxBufferRecords:
		return fmt.Errorf("--recovery-buffer-size %d: want 1 to %d", r.RecoveryBuffer, maxBufferRecords)
	case r.StandbyBuffer < 1 || r.StandbyBuffer > maxBufferRecords:
		return fmt.Errorf("--standby-buffer-size %d: want 1 to %d", r.StandbyBuffer, maxBufferRecords)
	case r.TombstoneTTL < 0 || r.TombstoneTTL > 0 && r.TombstoneTTL < time.Second:
		return fmt.Errorf("--tombstone-ttl %s: want at least 1s, or 0 (for ever)", r.TombstoneTTL)
	case r.MaxClockSkew < 0:
		return fmt.Errorf("--max-clock-skew %s: want 0 (no bound) or more", r.MaxClockSkew)
	case r.SourceMaxBytes != 0 && r.SourceMaxBytes < 1<<20:
		return fmt.Errorf("--source-max-bytes %d: must be at least 1 MiB (0: automatic)", r.SourceMaxBytes)
	case len(r.Table) == 0:
		return errors.New("--table: give at least one table")
	case len(r.Routes) > 0 && r.ClusterListen == "":
		return errors.New("--routes: needs --cluster-listen")
	case r.ClusterListen != "" && r.Name == "":
		return errors.New("--name: a cluster member needs a stable name")
	case r.ClusterListen != "" && len(r.NATSURL) > 0:
		return errors.New("--nats-url: excludes --cluster-listen (an embedded cluster)")
	case r.ClusterListen != "" && !jetstream.ClusterSupported:
		return fmt.Errorf("--cluster-listen: %w", jetstream.ErrClusterUnsupported)
	case r.Replicas < 0 || r.Replicas > 5:
		return fmt.Errorf("--replicas %d: want 0 (automatic) to 5", r.Replicas)
	case r.Standbys < 0:
		return fmt.Errorf("--standbys %d: must not be negative", r.Standbys)
	case r.SessionTimeout < time.Second:
		return fmt.Errorf("--session-timeout %s: want at least 1s", r.SessionTimeout)
	case r.ElectionTimeout != 0 && r.ElectionTimeout < jetstream.MinElectionTimeout:
		return fmt.Errorf("--election-timeout %s: want 0 (the server's own) or at least %s", r.ElectionTimeout, jetstream.MinElectionTimeout)
	case r.ElectionTimeout != 0 && len(r.NATSURL) > 0:
		return errors.New("--election-timeout: only for the embedded server, not with --nats-url")
	}
	if err := r.checkListen(); err != nil {
		return err
	}
	for _, route := range r.Routes {
		if !strings.HasPrefix(route, "nats-route://") || !strings.Contains(route, ":") {
			return fmt.Errorf("--routes %q: want nats-route://host:port", route)
		}
	}
	for _, u := range r.NATSURL {
		if err := checkNATSURL(u); err != nil {
			return fmt.Errorf("--nats-url %q: %w", u, err)
		}
	}
	// Streams of more replicas than the cluster has servers cannot be
	// created: say so now rather than after a minute of retries.
	switch servers := len(r.Routes) + 1; {
	case len(r.NATSURL) == 0 && r.ClusterListen == "" && r.Replicas > 1:
		return fmt.Errorf("--replicas %d: a single node (no --cluster-listen, no --nats-url) keeps one copy; use --replicas 1 or 0", r.Replicas)
	case r.ClusterListen != "" && r.Replicas > servers:
		return fmt.Errorf("--replicas %d: more than the %d servers --routes names (with this one)", r.Replicas, servers)
	}
	if n := btoi(r.NATSCreds != "") + btoi(r.NATSUser != "" || r.NATSPassword != "" || r.NATSPasswordFile != "") +
		btoi(r.NATSToken != "" || r.NATSTokenFile != ""); n > 1 {
		return errors.New("--nats-creds, --nats-user/--nats-password-file and --nats-token-file exclude each other")
	}
	if err := r.securityFlags.validate(len(r.NATSURL) == 0, r.ClusterListen != ""); err != nil {
		return err
	}
	if (r.NATSCert == "") != (r.NATSKey == "") {
		return errors.New("--nats-cert and --nats-key go together")
	}
	if err := r.httpSecurity.validate(); err != nil {
		return err
	}
	if err := r.edgeFlags.validate(len(r.NATSURL) > 0); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range r.Table {
		if seen[t.Name] {
			return fmt.Errorf("--table: table name %q used twice", t.Name)
		}
		seen[t.Name] = true
		if err := jetstream.ValidateSourceSubject(r.App, t.Source); err != nil {
			return fmt.Errorf("--table %s: source %q: %w", t.Name, t.Source, err)
		}
	}
	for _, g := range r.GlobalTable {
		if seen[g.name] {
			return fmt.Errorf("--global-table: table name %q used twice", g.name)
		}
		seen[g.name] = true
	}
	for _, name := range r.ResetTable {
		if !seen[name] {
			return fmt.Errorf("--reset-table %s: not declared by --table or --global-table (declare it with its new spec)", name)
		}
	}
	return nil
}

// checkNATSURL refuses a server URL that nats.go could never dial.
func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("want nats://host:port or tls://host:port: %w", err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats://, tls://, ws:// or wss://", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host: want nats://host:port")
	}
	return nil
}

func (r *runCmd) config(log *slog.Logger) (edge.Config, error) {
	cfg := edge.Config{
		Name: r.Name, App: r.App, DataDir: r.DataDir, NATSListen: r.NATSListen, HTTPListen: r.HTTPListen,
		SyncAlways: r.Sync == "always", ExactlyOnce: r.Guarantee == "exactly-once", SourceMaxBytes: int64(r.SourceMaxBytes), Partitions: r.Partitions,
		MaxStore: int64(r.MaxStore), MaxMemory: int64(r.MaxMemory), TombstoneTTL: r.TombstoneTTL,
		CommitInterval: r.CommitInterval, CommitEvery: r.CommitEvery, CommitIdle: commitIdle(r.CommitIdle), RecoveryBufferSize: r.RecoveryBuffer,
		StandbyBufferSize: r.StandbyBuffer, KeepSource: r.KeepSource, Logger: log, NoConsole: !r.Console,
		ClusterName: r.ClusterName, ClusterListen: r.ClusterListen, Routes: r.Routes, Replicas: r.Replicas,
		Standbys: r.Standbys, SessionTimeout: r.SessionTimeout, ElectionTimeout: r.ElectionTimeout, NATSURLs: r.NATSURL, ResetTables: r.ResetTable,
		ChangelogBehind: manager.ChangelogBehind(r.ChangelogBehind),
		NATS: jetstream.ExternalOptions{CredsFile: r.NATSCreds, User: r.NATSUser,
			CAFile: r.NATSCA, CertFile: r.NATSCert, KeyFile: r.NATSKey},
	}
	var err error
	if cfg.NATS.Password, cfg.NATS.Token, err = r.externalSecrets(); err != nil {
		return cfg, err
	}
	if len(r.NATSURL) == 0 {
		if cfg.NATSSecurity, err = r.security(); err != nil {
			return cfg, err
		}
	}
	if r.Standbys == 0 {
		cfg.Standbys = -1 // edge.Config: negative means none
	}
	if r.TombstoneTTL == 0 {
		cfg.TombstoneTTL = -1 // edge.Config: negative means for ever
	}
	if err := r.httpSecurity.load(&cfg); err != nil {
		return cfg, err
	}
	cfg.Edge = r.edgeFlags.config()
	for _, t := range r.Table {
		t.MaxClockSkew = r.MaxClockSkew
		if r.MaxClockSkew == 0 {
			t.MaxClockSkew = -1 // no bound
		}
		table, agent, err := builtin.Builtin(t.TableSpec)
		if err != nil {
			return cfg, fmt.Errorf("--table: %w", err)
		}
		cfg.Tables = append(cfg.Tables, table)
		cfg.Agents = append(cfg.Agents, agent)
	}
	for _, g := range r.GlobalTable {
		table, err := builtin.GlobalJSONTable(g.name)
		if err != nil {
			return cfg, fmt.Errorf("--global-table: %w", err)
		}
		cfg.Tables = append(cfg.Tables, table)
	}
	return cfg, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

type versionCmd struct{}

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the command line args and returns the exit status: 0, 1 for
// a failure while running, 2 for invalid flags, including flags that do not
// fit the app's recorded metadata (edge.ErrAppShape).
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c cli
	exit := -1
	parser, err := newParser(&c, stdout, stderr, func(code int) { exit = code })
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: %v\n", err)
		return 1
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err == nil {
		err = secretOnCommandLine(args)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
		fmt.Fprintln(stderr, "Run 'edgetables --help' for usage.")
		return exitUsage
	}
	log := newLogger(stderr, c.LogLevel, c.LogFormat)
	warnUnknownEnv(parser.Model, os.Environ(), log)

	switch kctx.Command() {
	case "version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "status":
		return c.Status.run(ctx, stdout, stderr)
	case "passwd":
		return c.Passwd.run(os.Stdin, stdout, stderr)
	case "bench":
		return c.Bench.run(ctx, stdout, stderr, log)
	case "check":
		return c.Check.run(stdout, stderr, log)
	case "run":
		node, err := c.Run.newNode(log)
		if err != nil {
			fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
			return exitUsage
		}
		c.Run.setMemoryLimit(log)
		c.Run.setGCPercent(log)
		c.Run.warnLooseSecrets(log)
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		defer reloadOnHangup(ctx, node.Config(), log)()
		if err := node.Run(ctx); err != nil {
			if errors.Is(err, edge.ErrAppShape) || errors.Is(err, jetstream.ErrInsecure) {
				// The flags do not fit the app, or open a port without
				// authentication: like an invalid flag.
				fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
				return exitUsage
			}
			log.Error("node failed", "err", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "edgetables: unknown command %q\n", kctx.Command())
	return exitUsage
}

// newParser returns the command line's parser into c (docs/flags.md is
// generated from its model).
func newParser(c *cli, stdout, stderr io.Writer, exit func(int)) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("edgetables"),
		kong.Description("Faust-style tables on NATS JetStream, in one binary."),
		kong.DefaultEnvars("EDGETABLES"),
		kong.Writers(stdout, stderr),
		kong.Exit(exit),
		kong.UsageOnError(),
	)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// commitIdle maps --commit-idle to manager.Config.CommitIdle, where 0
// means the default and a negative duration means off.
func commitIdle(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
