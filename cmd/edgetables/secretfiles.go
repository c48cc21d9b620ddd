package main

import (
	"fmt"
	"log/slog"
	"os"
)

// secretFile is a file given to a flag that holds a secret, or that grants
// access (a users or tokens file: whoever can write it can add a user).
type secretFile struct{ flag, path string }

// secretFiles returns the secret files run was given.
func (r *runCmd) secretFiles() []secretFile {
	var out []secretFile
	for _, f := range []secretFile{
		{"--nats-auth", r.NATSAuth}, {"--nats-config", r.NATSConfig}, {"--nats-tls-key", r.NATSTLSKey},
		{"--cluster-tls-key", r.ClusterTLSKey}, {"--cluster-password-file", r.ClusterPasswordFile},
		{"--nats-password-file", r.NATSPasswordFile}, {"--nats-token-file", r.NATSTokenFile},
		{"--http-tokens", r.HTTPTokens}, {"--http-tls-key", r.HTTPTLSKey},
		{"--nats-creds", r.NATSCreds}, {"--leaf-creds", r.LeafCreds}, {"--leaf-password-file", r.LeafPasswordFile}, {"--leaf-tls-key", r.LeafKey},
	} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// looseSecrets returns a warning for each secret file other users may
// read or write (any group or other permission bit), as ssh refuses a
// private key others can read. It warns rather than refuses: a file
// shared with a service's group is a choice some deployments make.
func looseSecrets(files []secretFile) []string {
	var out []string
	for _, f := range files {
		fi, err := os.Stat(f.path)
		if err != nil {
			continue // the flag's own reading reports it
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s %s has mode %04o: other users may read or change it; chmod 600 it", f.flag, f.path, perm))
		}
	}
	return out
}

// warnLooseSecrets logs looseSecrets of run's files.
func (r *runCmd) warnLooseSecrets(log *slog.Logger) {
	for _, w := range looseSecrets(r.secretFiles()) {
		log.Warn("secret file open to other users", "warning", w)
	}
}
