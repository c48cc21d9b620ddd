package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/jetstream"
)

// edgeFlags are the flags of edge sites and hubs (README: "Edge sites").
type edgeFlags struct {
	LeafRemote       []string `name:"leaf-remote" help:"Make the embedded server a leaf node (an edge site) of the hub at this URL: nats-leaf://host:port or tls://host:port. Repeatable: URLs of one hub (cluster)." group:"edge sites" placeholder:"URL"`
	LeafCreds        string   `name:"leaf-creds" help:"Credentials file (JWT and seed) for the hub." type:"existingfile" group:"edge sites"`
	LeafUser         string   `name:"leaf-user" help:"User for the hub (with --leaf-password-file)." group:"edge sites"`
	LeafPasswordFile string   `name:"leaf-password-file" help:"File holding the password for the hub (its first line)." type:"existingfile" group:"edge sites"`
	LeafCA           string   `name:"leaf-tls-ca" help:"CA file (PEM) that verifies the hub's certificate; enables TLS." type:"existingfile" group:"edge sites"`
	LeafCert         string   `name:"leaf-tls-cert" help:"Client certificate (PEM) for mutual TLS with the hub." type:"existingfile" group:"edge sites"`
	LeafKey          string   `name:"leaf-tls-key" help:"Client key (PEM) for mutual TLS with the hub." type:"existingfile" group:"edge sites"`
	JSDomain         string   `name:"js-domain" help:"JetStream domain of the embedded server (default with --leaf-remote: the node's --name)." group:"edge sites"`
	HubDomain        string   `name:"hub-domain" help:"The hub's JetStream domain: a site keeps every source event the hub has not taken (up to --source-max-bytes)." default:"hub" group:"edge sites"`
	NoHubHold        bool     `name:"no-hub-hold" help:"A site trims its source stream without waiting for the hub to take the events (the hub then misses what it had not taken)." group:"edge sites"`
	HubSite          []string `name:"hub-site" help:"Make this node a hub node: its source stream sources site NAME's source stream (same --app) in JetStream domain DOMAIN (default NAME), subjects prefixed with NAME. Repeatable." group:"edge sites" placeholder:"NAME[=DOMAIN]"`
}

// validate checks the edge flags; errors name the flag.
func (e *edgeFlags) validate(external bool) error {
	for _, r := range e.LeafRemote {
		u, err := url.Parse(r)
		switch {
		case err != nil:
			return fmt.Errorf("--leaf-remote %q: %w", r, err)
		case u.Scheme != "nats-leaf" && u.Scheme != "tls":
			return fmt.Errorf("--leaf-remote %q: want nats-leaf://host:port or tls://host:port", r)
		case u.Hostname() == "" || u.Port() == "":
			return fmt.Errorf("--leaf-remote %q: want nats-leaf://host:port", r)
		case u.User != nil:
			return fmt.Errorf("--leaf-remote %q: no credentials in the URL; use --leaf-user and --leaf-password-file, or --leaf-creds", u.Redacted())
		}
	}
	leaf := len(e.LeafRemote) > 0
	switch {
	case external && (leaf || e.JSDomain != ""):
		return errors.New("--leaf-remote, --js-domain: need the embedded server, not --nats-url")
	case !leaf && (e.LeafCreds != "" || e.LeafUser != "" || e.LeafPasswordFile != "" || e.LeafCA != "" || e.LeafCert != "" || e.LeafKey != ""):
		return errors.New("--leaf-creds, --leaf-user, --leaf-password-file, --leaf-tls-*: need --leaf-remote")
	case (e.LeafUser == "") != (e.LeafPasswordFile == ""):
		return errors.New("--leaf-user and --leaf-password-file go together")
	case e.LeafCreds != "" && e.LeafUser != "":
		return errors.New("--leaf-creds and --leaf-user exclude each other")
	case (e.LeafCert == "") != (e.LeafKey == ""):
		return errors.New("--leaf-tls-cert and --leaf-tls-key go together")
	case e.JSDomain != "" && !nameRE.MatchString(e.JSDomain):
		return fmt.Errorf("--js-domain %q: want letters, digits, '_' and '-', at most 64", e.JSDomain)
	case !nameRE.MatchString(e.HubDomain):
		return fmt.Errorf("--hub-domain %q: want letters, digits, '_' and '-', at most 64", e.HubDomain)
	case leaf && e.JSDomain == e.HubDomain:
		return fmt.Errorf("--js-domain %q: the site's domain must differ from --hub-domain", e.JSDomain)
	}
	seen := map[string]bool{}
	for _, hs := range e.HubSite {
		s := parseHubSite(hs)
		if !nameRE.MatchString(s.Site) || !nameRE.MatchString(s.Domain) {
			return fmt.Errorf("--hub-site %q: want NAME or NAME=DOMAIN of letters, digits, '_' and '-'", hs)
		}
		if seen[s.Site] || seen["="+s.Domain] {
			return fmt.Errorf("--hub-site %q: site or domain given twice", hs)
		}
		seen[s.Site], seen["="+s.Domain] = true, true
	}
	return nil
}

// parseHubSite parses NAME[=DOMAIN].
func parseHubSite(s string) jetstream.SiteSource {
	name, domain, ok := strings.Cut(s, "=")
	if !ok {
		domain = name
	}
	return jetstream.SiteSource{Site: name, Domain: domain}
}

// config returns the node's edge configuration.
func (e *edgeFlags) config() edge.EdgeConfig {
	c := edge.EdgeConfig{
		Leaf: jetstream.LeafConfig{Remotes: e.LeafRemote, CredsFile: e.LeafCreds, User: e.LeafUser,
			PasswordFile: e.LeafPasswordFile, CAFile: e.LeafCA, CertFile: e.LeafCert, KeyFile: e.LeafKey, Domain: e.JSDomain},
		HubDomain: e.HubDomain, NoHubHold: e.NoHubHold,
	}
	for _, hs := range e.HubSite {
		c.Sites = append(c.Sites, parseHubSite(hs))
	}
	return c
}
