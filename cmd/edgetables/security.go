package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgetables/edgetables/jetstream"
)

// securityFlags are the run command's flags for the embedded server's
// users, roles and TLS, and the secrets of --nats-url. No flag takes a
// secret itself: /proc/*/cmdline is world-readable. Secrets come from files
// (systemd's LoadCredential= puts them in $CREDENTIALS_DIRECTORY) or from
// the environment.
type securityFlags struct {
	NATSAuth            string `name:"nats-auth" help:"Users file (JSON) of the embedded server: {\"users\":[{\"user\":NAME,\"password_bcrypt\":HASH|\"nkey\":PUBLICKEY,\"role\":\"device|reader|admin\"}]}. With users, every client must authenticate." type:"existingfile" group:"security" placeholder:"FILE"`
	NATSConfig          string `name:"nats-config" help:"nats-server configuration file whose authorization, accounts and tls blocks the embedded server uses as they are (edgetables' flags set name, listen addresses, routes and JetStream on top)." type:"existingfile" group:"security" placeholder:"FILE"`
	NATSAccount         string `name:"nats-account" help:"Account (of --nats-config) of the node and of the --nats-auth users (default: the global account)." group:"security"`
	NATSTLSCert         string `name:"nats-tls-cert" help:"Certificate (PEM) of the embedded server's client port: clients must use TLS." type:"existingfile" group:"security"`
	NATSTLSKey          string `name:"nats-tls-key" help:"Key (PEM) of --nats-tls-cert." type:"existingfile" group:"security"`
	NATSTLSCA           string `name:"nats-tls-ca" help:"CA (PEM) that verifies client certificates: with it, clients must present one (mutual TLS)." type:"existingfile" group:"security"`
	ClusterTLSCert      string `name:"cluster-tls-cert" help:"Certificate (PEM) of this node on the routes (server and client)." type:"existingfile" group:"security"`
	ClusterTLSKey       string `name:"cluster-tls-key" help:"Key (PEM) of --cluster-tls-cert." type:"existingfile" group:"security"`
	ClusterTLSCA        string `name:"cluster-tls-ca" help:"CA (PEM) of the cluster: routes in both directions must present a certificate it signed." type:"existingfile" group:"security"`
	ClusterUser         string `name:"cluster-user" help:"User name of the routes (with --cluster-password-file)." default:"route" group:"security"`
	ClusterPasswordFile string `name:"cluster-password-file" help:"File holding the routes' password (plain text, the same on every node; or env EDGETABLES_CLUSTER_PASSWORD): routes without it are refused." type:"existingfile" group:"security" placeholder:"FILE"`
	ClusterPassword     string `name:"cluster-password" hidden:"" help:"Set EDGETABLES_CLUSTER_PASSWORD instead: a password on the command line is refused."`
	Insecure            bool   `help:"Let the NATS client or route port listen beyond loopback without authentication (anyone on the network could then delete the app's streams or forge its records)." group:"security"`

	NATSPasswordFile string `name:"nats-password-file" help:"File holding the password of --nats-user (or env EDGETABLES_NATS_PASSWORD)." type:"existingfile" group:"external NATS" placeholder:"FILE"`
	NATSPassword     string `name:"nats-password" hidden:"" help:"Set EDGETABLES_NATS_PASSWORD instead: a password on the command line is refused."`
	NATSTokenFile    string `name:"nats-token-file" help:"File holding the token for --nats-url (or env EDGETABLES_NATS_TOKEN)." type:"existingfile" group:"external NATS" placeholder:"FILE"`
	NATSToken        string `name:"nats-token" hidden:"" help:"Set EDGETABLES_NATS_TOKEN instead: a token on the command line is refused."`
}

// secretFlags take a secret: they are read from the environment only.
var secretFlags = map[string]string{
	"--nats-password":    "--nats-password-file or EDGETABLES_NATS_PASSWORD",
	"--nats-token":       "--nats-token-file or EDGETABLES_NATS_TOKEN",
	"--cluster-password": "--cluster-password-file or EDGETABLES_CLUSTER_PASSWORD",
}

// secretOnCommandLine returns an error naming the first flag of args that
// puts a secret on the command line.
func secretOnCommandLine(args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		name, _, _ := strings.Cut(a, "=")
		if use, ok := secretFlags[name]; ok {
			return fmt.Errorf("%s: a secret on the command line is readable by every local user (/proc/*/cmdline); use %s", name, use)
		}
	}
	return nil
}

func (f *securityFlags) validate(embedded, cluster bool) error {
	switch {
	case f.NATSPassword != "" && f.NATSPasswordFile != "":
		return errors.New("--nats-password-file: EDGETABLES_NATS_PASSWORD is set too")
	case f.NATSToken != "" && f.NATSTokenFile != "":
		return errors.New("--nats-token-file: EDGETABLES_NATS_TOKEN is set too")
	case f.ClusterPassword != "" && f.ClusterPasswordFile != "":
		return errors.New("--cluster-password-file: EDGETABLES_CLUSTER_PASSWORD is set too")
	case (f.NATSTLSCert == "") != (f.NATSTLSKey == ""):
		return errors.New("--nats-tls-cert and --nats-tls-key go together")
	case f.NATSTLSCA != "" && f.NATSTLSCert == "":
		return errors.New("--nats-tls-ca: needs --nats-tls-cert and --nats-tls-key")
	}
	clusterTLS := f.ClusterTLSCert != "" || f.ClusterTLSKey != "" || f.ClusterTLSCA != ""
	if clusterTLS && (f.ClusterTLSCert == "" || f.ClusterTLSKey == "" || f.ClusterTLSCA == "") {
		return errors.New("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together")
	}
	if !cluster {
		switch {
		case clusterTLS:
			return errors.New("--cluster-tls-cert: needs --cluster-listen")
		case f.ClusterPasswordFile != "" || f.ClusterPassword != "":
			return errors.New("--cluster-password-file: needs --cluster-listen")
		}
	}
	if !embedded {
		for flag, set := range map[string]bool{"--nats-auth": f.NATSAuth != "", "--nats-config": f.NATSConfig != "",
			"--nats-tls-cert": f.NATSTLSCert != "", "--cluster-tls-cert": clusterTLS, "--insecure": f.Insecure} {
			if set {
				return fmt.Errorf("%s: configures the embedded server, not --nats-url", flag)
			}
		}
	}
	if f.NATSAccount != "" && f.NATSConfig == "" {
		return errors.New("--nats-account: names an account of --nats-config")
	}
	return nil
}

// security returns the embedded server's jetstream.Security, reading the
// users file and the route password.
func (f *securityFlags) security() (jetstream.Security, error) {
	sec := jetstream.Security{ConfigFile: f.NATSConfig, Account: f.NATSAccount, Insecure: f.Insecure,
		TLS:        jetstream.TLSFiles{CertFile: f.NATSTLSCert, KeyFile: f.NATSTLSKey, CAFile: f.NATSTLSCA},
		ClusterTLS: jetstream.TLSFiles{CertFile: f.ClusterTLSCert, KeyFile: f.ClusterTLSKey, CAFile: f.ClusterTLSCA}}
	if f.NATSAuth != "" {
		users, err := jetstream.ReadUsersFile(f.NATSAuth)
		if err != nil {
			return sec, fmt.Errorf("--nats-auth: %w", err)
		}
		sec.Users = users
	}
	password, err := secret("--cluster-password-file", f.ClusterPasswordFile, f.ClusterPassword)
	if err != nil {
		return sec, err
	}
	if password != "" {
		sec.ClusterUser, sec.ClusterPassword = f.ClusterUser, password
	}
	return sec, nil
}

// externalSecrets returns the password and token of --nats-url.
func (f *securityFlags) externalSecrets() (password, token string, err error) {
	if password, err = secret("--nats-password-file", f.NATSPasswordFile, f.NATSPassword); err != nil {
		return "", "", err
	}
	token, err = secret("--nats-token-file", f.NATSTokenFile, f.NATSToken)
	return password, token, err
}

// secret returns the content of file without its final line break, or
// value (from the environment) when file is empty.
func secret(flag, file, value string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s: empty", flag, file)
	}
	return s, nil
}

// passwdCmd prints the bcrypt hash of a password read from stdin.
type passwdCmd struct {
	Cost int `help:"bcrypt cost (each step doubles the work of checking a password)." default:"11"`
}

func (p *passwdCmd) run(stdin io.Reader, stdout, stderr io.Writer) int {
	if p.Cost < bcrypt.MinCost || p.Cost > bcrypt.MaxCost {
		fmt.Fprintf(stderr, "edgetables: error: --cost %d: want %d to %d\n", p.Cost, bcrypt.MinCost, bcrypt.MaxCost)
		return exitUsage
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 1<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "edgetables: error: reading the password: %v\n", err)
		return 1
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		fmt.Fprintln(stderr, "edgetables: error: no password on stdin")
		return 1
	}
	if len(password) > 72 {
		fmt.Fprintln(stderr, "edgetables: error: bcrypt uses at most 72 bytes of a password")
		return 1
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), p.Cost)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(h))
	return 0
}
