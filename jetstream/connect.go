package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// connectRetryWait is how long ConnectExternal waits between attempts while
// no server is reachable.
const connectRetryWait = 500 * time.Millisecond

// ExternalOptions configures a connection to an external NATS deployment
// (ConnectExternal). At most one of CredsFile, User/Password and Token may
// be set; the zero value connects without authentication or TLS.
type ExternalOptions struct {
	// Name is the connection name the servers show in their monitoring.
	// Default "edgetables".
	Name string
	// CredsFile is a NATS credentials file (user JWT and NKey seed), for
	// decentralized (operator mode) authentication.
	CredsFile string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CAFile is a PEM file of the CAs that verify the servers' TLS
	// certificates. Setting it requires TLS. Default: the system's roots
	// (used when a server requires TLS).
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS; set both or neither.
	CertFile, KeyFile string
	// Logger receives disconnects, reconnects and asynchronous errors.
	// Default slog.Default().
	Logger *slog.Logger
}

func (o ExternalOptions) validate() error {
	auth := 0
	if o.CredsFile != "" {
		auth++
	}
	if o.User != "" || o.Password != "" {
		auth++
	}
	if o.Token != "" {
		auth++
	}
	if auth > 1 {
		return errors.New("edgetables/jetstream: ExternalOptions: set only one of CredsFile, User/Password and Token")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("edgetables/jetstream: ExternalOptions: CertFile and KeyFile go together")
	}
	return nil
}

// ConnectExternal connects to an external NATS deployment at urls (e.g.
// "nats://host:4222" or "tls://host:4222"; the client picks among them at
// random and learns the cluster's other servers from the first it reaches).
//
// While no server is reachable (connection refused, dial timeout) it retries
// every 500 ms until ctx ends, so a node may start before its NATS servers;
// other failures (authorization, TLS, bad options) are returned at once.
// Once connected, the connection reconnects without limit and logs
// disconnects, reconnects and asynchronous errors. It does not wait for
// JetStream: call WaitForJetStream for that.
func ConnectExternal(ctx context.Context, urls []string, opts ExternalOptions) (*nats.Conn, error) {
	if len(urls) == 0 {
		return nil, errors.New("edgetables/jetstream: ConnectExternal: no server URLs")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "edgetables"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	servers := strings.Join(urls, ",")
	nopts := connOptions(opts.Logger.With("conn", opts.Name), opts.Name)
	switch {
	case opts.CredsFile != "":
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	case opts.User != "" || opts.Password != "":
		nopts = append(nopts, nats.UserInfo(opts.User, opts.Password))
	case opts.Token != "":
		nopts = append(nopts, nats.Token(opts.Token))
	}
	if opts.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(opts.CAFile))
	}
	if opts.CertFile != "" {
		nopts = append(nopts, nats.ClientCert(opts.CertFile, opts.KeyFile))
	}
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("edgetables/jetstream: connect %s to %s: %w", opts.Name, servers, err)
		}
		attempt := nopts
		if dl, ok := ctx.Deadline(); ok {
			// Bound each dial by ctx (nats.go's default dial timeout is 2 s).
			attempt = append(attempt[:len(attempt):len(attempt)], nats.Timeout(max(time.Until(dl), time.Millisecond)))
		}
		nc, err := nats.Connect(servers, attempt...)
		if err == nil {
			return nc, nil
		}
		var nerr net.Error
		if !errors.Is(err, nats.ErrNoServers) && !errors.As(err, &nerr) {
			return nil, fmt.Errorf("edgetables/jetstream: connect %s to %s: %w", opts.Name, servers, err)
		}
		if failures++; failures == 1 || failures%20 == 0 {
			opts.Logger.Warn("waiting for NATS: servers unreachable; retrying", "servers", servers, "attempts", failures, "err", err)
		}
		t := time.NewTimer(connectRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("edgetables/jetstream: connect %s to %s: %w (last error: %w)", opts.Name, servers, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// connOptions are the options of every connection this package opens:
// named name, reconnecting without limit every 250 ms, logging disconnects,
// reconnects and asynchronous errors (such as a slow consumer) to log.
func connOptions(log *slog.Logger, name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
}
