package jetstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// domainRE is what a JetStream domain or a site name may hold: one
// subject token of letters, digits, '_' and '-'.
var domainRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrLeafConfig is wrapped by errors in a LeafConfig.
var ErrLeafConfig = errors.New("edgetables/jetstream: leaf node configuration")

// LeafConfig makes the embedded server a leaf node of a hub (an edge site)
// and names its JetStream domain. The zero value does neither.
//
// A site's streams and buckets then live in the site's own domain: the
// site keeps ingesting, processing and committing while the link to the
// hub is down, and the hub reaches them across the leaf connection through
// the domain's API prefix ($JS.<domain>.API), e.g. to source the site's
// source stream (see SiteSource).
type LeafConfig struct {
	// Remotes are the hub's leaf node URLs: nats-leaf://host:port, or
	// tls://host:port for TLS. They are URLs of one hub (a hub cluster's
	// servers): the server connects to one of them at a time, and
	// reconnects every second while the link is down. A user and password
	// in a URL are refused: use User and PasswordFile.
	Remotes []string
	// CredsFile is a NATS credentials file (JWT and seed) for the hub.
	CredsFile string
	// User and PasswordFile authenticate to the hub with a user and the
	// password held in the file (its first line). They exclude CredsFile.
	User         string
	PasswordFile string
	// CAFile verifies the hub's certificate (PEM); CertFile and KeyFile
	// are a client certificate for mutual TLS. Any of them, or a tls://
	// remote, enables TLS on the link (TLS 1.2 or later; without CAFile
	// the system roots verify the hub).
	CAFile, CertFile, KeyFile string
	// Domain is the server's JetStream domain. Required with Remotes (the
	// hub and every site need domains of their own); allowed alone.
	Domain string
	// LocalSubjects stay on this server: messages on them are neither sent
	// to the hub nor taken from it. Sites share the hub's account, so
	// without this an event published at one site would also reach the
	// streams of every other site capturing its subject (and a site's
	// changelog writes the others' changelogs). See SiteLocalSubjects.
	LocalSubjects []string
}

// SiteLocalSubjects are the subjects of app that must stay on a site: the
// app's own (changelog, commits, dead letters, queries, global tables) and
// its source subjects. The hub reaches the site's events by sourcing its
// stream, whose traffic uses other subjects.
func SiteLocalSubjects(app string, sources []string) []string {
	return append([]string{app + ".>"}, sources...)
}

// hubDeniedOps are the operations of a site's JetStream API that its hub
// may not request (relative to $JS.<domain>.API.): those that change,
// remove or move a stream's messages, or stall or move a consumer. The
// hub's sourcing needs only stream info and consumer create and delete;
// reads (message get, direct get, info) stay open too.
var hubDeniedOps = []string{
	"STREAM.CREATE.*", "STREAM.UPDATE.*", "STREAM.DELETE.*", "STREAM.PURGE.*",
	"STREAM.MSG.DELETE.*", "STREAM.SNAPSHOT.*", "STREAM.RESTORE.*", "STREAM.PEER.>",
	"STREAM.CANCEL_MOVE.*", "STREAM.LEADER.STEPDOWN.*",
	"CONSUMER.PAUSE.*.*", "CONSUMER.RESET.*.*", "CONSUMER.UNPIN.*.*",
	"CONSUMER.LEADER.STEPDOWN.*.*", "CONSUMER.PEER.>",
	"META.>", "SERVER.>", "ACCOUNT.>",
}

// HubDeniedAPI are the subjects of the JetStream API of a site in domain
// that the site does not take from its hub: through the domain's API
// prefix, any hub user allowed $JS.> (an operator with the nats CLI, a
// leaked credential) could otherwise purge or delete the site's source and
// changelog streams, or pause the node's consumer.
func HubDeniedAPI(domain string) []string {
	if domain == "" {
		return nil
	}
	out := make([]string, len(hubDeniedOps))
	for i, op := range hubDeniedOps {
		out[i] = apiPrefix(domain) + "." + op
	}
	return out
}

// Validate checks c without reading its files' contents.
func (c LeafConfig) Validate() error {
	if c.Domain != "" && !domainRE.MatchString(c.Domain) {
		return fmt.Errorf("%w: domain %q: want letters, digits, '_' and '-'", ErrLeafConfig, c.Domain)
	}
	if len(c.Remotes) == 0 {
		if c.CredsFile != "" || c.User != "" || c.PasswordFile != "" || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
			return fmt.Errorf("%w: credentials or TLS files without a leaf remote", ErrLeafConfig)
		}
		return nil
	}
	if c.Domain == "" {
		return fmt.Errorf("%w: a leaf node needs a JetStream domain of its own", ErrLeafConfig)
	}
	if (c.User == "") != (c.PasswordFile == "") {
		return fmt.Errorf("%w: a user and a password file go together", ErrLeafConfig)
	}
	if c.CredsFile != "" && c.User != "" {
		return fmt.Errorf("%w: a credentials file and a user exclude each other", ErrLeafConfig)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: a client certificate and its key go together", ErrLeafConfig)
	}
	for _, r := range c.Remotes {
		if _, _, err := parseLeafURL(r); err != nil {
			return err
		}
	}
	return nil
}

// parseLeafURL parses a remote; tls reports a tls:// or wss:// scheme.
func parseLeafURL(s string) (u *url.URL, tls bool, err error) {
	u, err = url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, false, fmt.Errorf("%w: remote %q: %w", ErrLeafConfig, s, err)
	}
	switch u.Scheme {
	case "nats-leaf", "nats", "ws":
	case "tls", "wss":
		tls = true
	default:
		return nil, false, fmt.Errorf("%w: remote %q: want nats-leaf://host:port or tls://host:port", ErrLeafConfig, s)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, false, fmt.Errorf("%w: remote %q: want nats-leaf://host:port", ErrLeafConfig, s)
	}
	if u.User != nil {
		return nil, false, fmt.Errorf("%w: remote %q: credentials in the URL; use a password or credentials file", ErrLeafConfig, u.Redacted())
	}
	return u, tls, nil
}

// leafOptions sets opts' JetStream domain and leaf node remote from c. It
// reads the password and TLS files.
func leafOptions(c LeafConfig, opts *server.Options) error {
	if err := c.Validate(); err != nil {
		return err
	}
	opts.JetStreamDomain = c.Domain
	if len(c.Remotes) == 0 {
		return nil
	}
	var password string
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("%w: password file: %w", ErrLeafConfig, err)
		}
		password, _, _ = strings.Cut(string(b), "\n")
		password = strings.TrimRight(password, "\r")
		if password == "" {
			return fmt.Errorf("%w: password file %s is empty", ErrLeafConfig, c.PasswordFile)
		}
	}
	remote := &server.RemoteLeafOpts{Credentials: c.CredsFile,
		DenyExports: c.LocalSubjects, DenyImports: append(slices.Clone(c.LocalSubjects), HubDeniedAPI(c.Domain)...)}
	useTLS := c.CAFile != "" || c.CertFile != ""
	for _, r := range c.Remotes {
		u, isTLS, _ := parseLeafURL(r)
		useTLS = useTLS || isTLS
		if c.User != "" {
			// RemoteLeafOpts has no user fields: the server sends the URL's.
			u.User = url.UserPassword(c.User, password)
		}
		remote.URLs = append(remote.URLs, u)
	}
	if useTLS {
		tc, err := leafTLS(c)
		if err != nil {
			return err
		}
		remote.TLS, remote.TLSConfig = true, tc
	}
	opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, remote)
	return nil
}

// leafTLS is the client TLS configuration of the leaf link.
func leafTLS(c LeafConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %w", ErrLeafConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s: no PEM certificate", ErrLeafConfig, c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrLeafConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// LeafConnections returns the number of leaf node connections of the
// server (a site: 1 while its link to the hub is up).
func (s *Server) LeafConnections() int { return s.ns.NumLeafNodes() }
