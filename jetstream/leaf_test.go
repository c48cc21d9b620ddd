package jetstream

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestLeafConfigValidate(t *testing.T) {
	remote := []string{"nats-leaf://hub:7422"}
	cases := []struct {
		name string
		c    LeafConfig
		ok   bool
	}{
		{"zero", LeafConfig{}, true},
		{"domain alone", LeafConfig{Domain: "s1"}, true},
		{"site", LeafConfig{Remotes: remote, Domain: "s1"}, true},
		{"tls remote", LeafConfig{Remotes: []string{"tls://hub:7422"}, Domain: "s1"}, true},
		{"no domain", LeafConfig{Remotes: remote}, false},
		{"bad domain", LeafConfig{Remotes: remote, Domain: "a.b"}, false},
		{"scheme", LeafConfig{Remotes: []string{"http://hub:7422"}, Domain: "s1"}, false},
		{"no port", LeafConfig{Remotes: []string{"nats-leaf://hub"}, Domain: "s1"}, false},
		{"password in url", LeafConfig{Remotes: []string{"nats-leaf://u:p@hub:7422"}, Domain: "s1"}, false},
		{"user without password", LeafConfig{Remotes: remote, Domain: "s1", User: "u"}, false},
		{"creds and user", LeafConfig{Remotes: remote, Domain: "s1", User: "u", PasswordFile: "f", CredsFile: "c"}, false},
		{"cert without key", LeafConfig{Remotes: remote, Domain: "s1", CertFile: "c"}, false},
		{"creds without remote", LeafConfig{CredsFile: "c"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.c.Validate()
			if (err == nil) != c.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrLeafConfig) {
				t.Fatalf("error %v does not wrap ErrLeafConfig", err)
			}
		})
	}
}

// TestLeafOptionsPasswordFile: the password comes from the file's first
// line into the remote's URL (nats-server has no other place for it); the
// local subjects are denied both ways; a tls:// remote enables TLS.
func TestLeafOptionsPasswordFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var opts server.Options
	c := LeafConfig{Remotes: []string{"tls://hub:7422"}, Domain: "s1", User: "site1", PasswordFile: pw,
		LocalSubjects: SiteLocalSubjects("app", []string{"ev.*"})}
	if err := leafOptions(c, &opts); err != nil {
		t.Fatal(err)
	}
	if opts.JetStreamDomain != "s1" || len(opts.LeafNode.Remotes) != 1 {
		t.Fatalf("domain %q, remotes %d", opts.JetStreamDomain, len(opts.LeafNode.Remotes))
	}
	r := opts.LeafNode.Remotes[0]
	if p, _ := r.URLs[0].User.Password(); r.URLs[0].User.Username() != "site1" || p != "s3cret" {
		t.Fatalf("remote user %v", r.URLs[0].User)
	}
	if !r.TLS || r.TLSConfig == nil {
		t.Fatal("tls:// remote without TLS")
	}
	if len(r.DenyExports) != 2 || r.DenyExports[0] != "app.>" || r.DenyImports[1] != "ev.*" {
		t.Fatalf("deny exports %v imports %v", r.DenyExports, r.DenyImports)
	}
	c.PasswordFile = filepath.Join(t.TempDir(), "missing")
	if err := leafOptions(c, &opts); !errors.Is(err, ErrLeafConfig) {
		t.Fatalf("missing password file: %v", err)
	}
}
