package jetstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// Role names what a user of the embedded server may do. The node itself is
// none of them: it connects in-process with an identity of its own (see
// Server.Connect).
type Role string

// Roles of the embedded server's users.
const (
	// RoleDevice may publish to the app's source subjects (the tables'
	// declared sources) and receive its publish acks on its own inbox
	// prefix (InboxPrefix). Nothing else: no JetStream API, no KV, no
	// changelog, commit, dead-letter, group, global or query subject.
	RoleDevice Role = "device"
	// RoleReader may send routed reads (the app's query subjects,
	// QuerySubject) and receive the answers on its own inbox prefix.
	RoleReader Role = "reader"
	// RoleAdmin may do everything (the nats CLI, operators).
	RoleAdmin Role = "admin"
)

// User is one credential of the embedded server: a name with a bcrypt
// password hash, or a name with an NKey public key, and a role.
type User struct {
	// Name is the user name a password client sends, and the token of its
	// inbox prefix (InboxPrefix) whatever the credential: letters, digits,
	// '_' and '-', at most 64.
	Name string `json:"user"`
	// PasswordBcrypt is the bcrypt hash of the password ("$2a$11$...",
	// see `edgetables passwd`). Plain passwords are refused.
	PasswordBcrypt string `json:"password_bcrypt,omitempty"`
	// NKey is the user's NKey public key ("U..."): the client proves it
	// holds the seed by signing the server's nonce; no secret is stored.
	NKey string `json:"nkey,omitempty"`
	// Role is what the user may do.
	Role Role `json:"role"`
}

// TLSFiles names PEM files of a TLS listener.
type TLSFiles struct {
	// CertFile and KeyFile are the listener's certificate chain and key.
	CertFile, KeyFile string
	// CAFile holds the CAs that verify the peers' certificates. On the
	// client port it is optional and makes client certificates required
	// (mutual TLS); on the route port it is required.
	CAFile string
}

func (f TLSFiles) set() bool { return f.CertFile != "" || f.KeyFile != "" || f.CAFile != "" }

// Security configures who may connect to the embedded server and how
// (ServerConfig.Security). The zero value is an open server, which
// StartServer accepts only on loopback addresses unless Insecure is set.
type Security struct {
	// Users are the embedded server's users. With users (here or in
	// ConfigFile) every client must authenticate.
	Users []User
	// ConfigFile is a nats-server configuration file whose
	// authorization, accounts, tls and cluster (tls, authorization) blocks
	// the server uses as they are, with NATS's own syntax and semantics.
	// The server name, listen addresses, routes and JetStream settings of
	// ServerConfig are set on top of it. A single user or token in its
	// authorization block, and operator mode, are refused: nats-server
	// ignores them once users exist, and the node's identity is one.
	ConfigFile string
	// Account is the account (defined in ConfigFile) of the node's
	// identity and of Users; its JetStream is enabled if the file does not
	// do it. Default: the global account.
	Account string
	// TLS secures the client port.
	TLS TLSFiles
	// ClusterTLS secures the route port: both sides present certificates
	// signed by ClusterTLS.CAFile, which is required.
	ClusterTLS TLSFiles
	// ClusterUser and ClusterPassword authenticate routes: the server
	// accepts only routes that present them, and presents them on the
	// routes it dials. The password is used to dial, so it is plain text.
	ClusterUser, ClusterPassword string
	// Insecure lets the client or route port listen beyond loopback
	// without authentication.
	Insecure bool
}

// ErrInsecure is returned by StartServer when the client port or the route
// port listens beyond loopback without authentication and
// Security.Insecure is not set.
var ErrInsecure = errors.New("edgetables/jetstream: port open beyond loopback without authentication")

// InboxPrefix is the inbox prefix of a device or reader named user:
// "_INBOX.<user>". Its clients must use it (nats.CustomInboxPrefix, the nats
// CLI's --inbox-prefix) to receive publish acks and replies.
func InboxPrefix(user string) string { return "_INBOX." + user }

var (
	userNameRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	bcryptRE        = regexp.MustCompile(`^\$2[abxy]\$\d{2}\$`)
	noSourceSubject = "_edgetables.no-source" // an allow list that matches nothing the node reads
)

// ValidateUsers checks users: names, one credential each (a bcrypt hash or
// an NKey public key), known roles, no duplicates.
func ValidateUsers(users []User) error {
	names, keys := map[string]bool{}, map[string]bool{}
	for _, u := range users {
		if !userNameRE.MatchString(u.Name) {
			return fmt.Errorf("edgetables/jetstream: user %q: want letters, digits, '_' and '-', at most 64", u.Name)
		}
		if names[u.Name] {
			return fmt.Errorf("edgetables/jetstream: user %q declared twice", u.Name)
		}
		names[u.Name] = true
		switch u.Role {
		case RoleDevice, RoleReader, RoleAdmin:
		default:
			return fmt.Errorf("edgetables/jetstream: user %q: role %q: want device, reader or admin", u.Name, u.Role)
		}
		switch {
		case (u.PasswordBcrypt == "") == (u.NKey == ""):
			return fmt.Errorf("edgetables/jetstream: user %q: give one of password_bcrypt and nkey", u.Name)
		case u.PasswordBcrypt != "":
			if !bcryptRE.MatchString(u.PasswordBcrypt) {
				return fmt.Errorf("edgetables/jetstream: user %q: password_bcrypt is not a bcrypt hash (plain passwords are refused; see edgetables passwd)", u.Name)
			}
			if _, err := bcrypt.Cost([]byte(u.PasswordBcrypt)); err != nil {
				return fmt.Errorf("edgetables/jetstream: user %q: password_bcrypt: %w", u.Name, err)
			}
		default:
			if !nkeys.IsValidPublicUserKey(u.NKey) {
				return fmt.Errorf("edgetables/jetstream: user %q: nkey is not an NKey user public key (U...)", u.Name)
			}
			if keys[u.NKey] {
				return fmt.Errorf("edgetables/jetstream: user %q: nkey used twice", u.Name)
			}
			keys[u.NKey] = true
		}
	}
	return nil
}

// usersFile is the JSON document of ReadUsersFile.
type usersFile struct {
	Users []User `json:"users"`
}

// ReadUsersFile reads and validates a users file:
//
//	{"users": [
//	  {"user": "dev-17", "password_bcrypt": "$2a$11$...", "role": "device"},
//	  {"user": "dash", "nkey": "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", "role": "reader"}
//	]}
//
// It holds no secret (bcrypt hashes and public keys), but should still be
// readable by the node only. Unknown fields are refused.
func ReadUsersFile(path string) ([]User, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: users file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f usersFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: users file %s: %w", path, err)
	}
	if err := ValidateUsers(f.Users); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return f.Users, nil
}

// rolePermissions are the permissions of role for the user named name in
// app, whose devices publish to sources. nil means everything.
func rolePermissions(role Role, name, app string, sources []string) *server.Permissions {
	inbox := []string{InboxPrefix(name) + ".>"}
	switch role {
	case RoleDevice:
		allow := append([]string{}, sources...) // non-nil: an empty allow list allows nothing
		if len(allow) == 0 {
			allow = []string{noSourceSubject}
		}
		return &server.Permissions{
			// The deny list wins over the allow list: a broad source
			// ("sensors.>" is fine, ">" is not) still leaves out the API,
			// the buckets and the app's own subjects.
			Publish:   &server.SubjectPermission{Allow: allow, Deny: deviceDeny(app)},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}
	case RoleReader:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{app + ".query.>"}},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}
	default:
		return nil
	}
}

// deviceDeny are the subjects no device may publish to, whatever its
// sources match: JetStream's API and acks, KV and object buckets, raft and
// system traffic, other clients' inboxes, and the app's own subjects.
func deviceDeny(app string) []string {
	return append([]string{"$JS.>", "$JSC.>", "$KV.>", "$O.>", "$OBJ.>", "$NRG.>", "$SYS.>", "_INBOX.>"},
		reservedSubjects(app)...)
}

// nodeIdentity is the node's own credential: an NKey user created at each
// start, with every right, allowed only on in-process connections. Its seed
// never leaves the process.
type nodeIdentity struct {
	kp  nkeys.KeyPair
	pub string
}

func newNodeIdentity() (*nodeIdentity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: node identity: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: node identity: %w", err)
	}
	return &nodeIdentity{kp: kp, pub: pub}, nil
}

// applySecurity sets opts' users, permissions and TLS from sec (opts holds
// ConfigFile's options already). It returns the node's identity, nil when
// the server has no authentication.
func applySecurity(sec Security, app string, sources []string, opts *server.Options) (*nodeIdentity, error) {
	if err := ValidateUsers(sec.Users); err != nil {
		return nil, err
	}
	if len(sec.Users) > 0 {
		if err := ValidateApp(app); err != nil {
			return nil, fmt.Errorf("edgetables/jetstream: Security.Users need ServerConfig.App: %w", err)
		}
	}
	if len(opts.TrustedOperators) > 0 || opts.TrustedKeys != nil {
		return nil, errors.New("edgetables/jetstream: Security.ConfigFile: operator mode (JWT) is not supported by the embedded server; use external NATS (--nats-url) with a creds file")
	}
	if opts.Username != "" || opts.Authorization != "" {
		return nil, errors.New("edgetables/jetstream: Security.ConfigFile: a single user or token in the authorization block is ignored by nats-server once users exist (the node's identity is one); declare users with a users list")
	}
	var acc *server.Account
	if sec.Account != "" {
		for _, a := range opts.Accounts {
			if a.Name == sec.Account {
				acc = a
			}
		}
		if acc == nil {
			return nil, fmt.Errorf("edgetables/jetstream: Security.Account %q: not an account of the config file", sec.Account)
		}
	}
	clients, err := clientsAccount(sec.Users, opts)
	if err != nil {
		return nil, err
	}
	for _, u := range sec.Users {
		perms := rolePermissions(u.Role, u.Name, app, sources)
		ua := acc
		if u.Role != RoleAdmin {
			ua = clients // see ClientsAccount
		}
		if u.NKey != "" {
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: perms, Account: ua})
		} else {
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.PasswordBcrypt, Permissions: perms, Account: ua})
		}
	}
	if err := applyTLS(sec, opts); err != nil {
		return nil, err
	}
	if len(opts.Users) == 0 && len(opts.Nkeys) == 0 {
		if sec.Account != "" {
			return nil, errors.New("edgetables/jetstream: Security.Account needs users")
		}
		return nil, nil // an open server: the node connects without credentials
	}
	id, err := newNodeIdentity()
	if err != nil {
		return nil, err
	}
	opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: id.pub, Account: acc,
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}}})
	return id, nil
}

// applyTLS sets the client and route TLS configurations of opts from sec's
// files, and the routes' credentials. A later leaf-node listener gets its
// TLS the same way (LeafNode.TLSConfig from a TLSFiles, RootCAs = ClientCAs
// for the remotes it dials).
func applyTLS(sec Security, opts *server.Options) error {
	if sec.TLS.set() {
		if sec.TLS.CertFile == "" || sec.TLS.KeyFile == "" {
			return errors.New("edgetables/jetstream: Security.TLS: CertFile and KeyFile are required")
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sec.TLS.CertFile, KeyFile: sec.TLS.KeyFile,
			CaFile: sec.TLS.CAFile, Verify: sec.TLS.CAFile != ""})
		if err != nil {
			return fmt.Errorf("edgetables/jetstream: client TLS: %w", err)
		}
		opts.TLSConfig = tc
	}
	if sec.ClusterTLS.set() {
		if sec.ClusterTLS.CertFile == "" || sec.ClusterTLS.KeyFile == "" || sec.ClusterTLS.CAFile == "" {
			return errors.New("edgetables/jetstream: Security.ClusterTLS: CertFile, KeyFile and CAFile are required")
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sec.ClusterTLS.CertFile, KeyFile: sec.ClusterTLS.KeyFile,
			CaFile: sec.ClusterTLS.CAFile, Verify: true})
		if err != nil {
			return fmt.Errorf("edgetables/jetstream: cluster TLS: %w", err)
		}
		tc.RootCAs = tc.ClientCAs // routes dial as well as accept
		opts.Cluster.TLSConfig = tc
	}
	if (sec.ClusterUser == "") != (sec.ClusterPassword == "") {
		return errors.New("edgetables/jetstream: Security.ClusterUser and ClusterPassword go together")
	}
	if sec.ClusterUser != "" {
		opts.Cluster.Username, opts.Cluster.Password = sec.ClusterUser, sec.ClusterPassword
	}
	return nil
}

// authenticated reports whether opts' server requires clients to
// authenticate.
func authenticated(opts *server.Options) bool {
	return len(opts.Users) > 0 || len(opts.Nkeys) > 0 || opts.CustomClientAuthentication != nil
}

// routesAuthenticated reports whether opts' route port accepts only routes
// with the cluster's credentials or a certificate of its CA.
func routesAuthenticated(opts *server.Options) bool {
	return opts.Cluster.Username != "" || (opts.Cluster.TLSConfig != nil && opts.Cluster.TLSConfig.ClientCAs != nil)
}

// loopback reports whether host (of a listen address) is a loopback
// address; "" and unspecified addresses listen on every interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkExposure refuses (ErrInsecure) a client or route port that listens
// beyond loopback without authentication, unless sec.Insecure; it warns
// when such a port carries passwords without TLS.
func checkExposure(sec Security, opts *server.Options, log *slog.Logger) error {
	client := net.JoinHostPort(opts.Host, strconv.Itoa(max(opts.Port, 0))) // -1: any free port
	if !loopback(opts.Host) {
		switch {
		case !authenticated(opts) && !sec.Insecure:
			return fmt.Errorf("%w: client port %s (--nats-listen): declare users (--nats-auth or --nats-config), listen on loopback, or accept the risk with --insecure", ErrInsecure, client)
		case !authenticated(opts):
			log.Warn("NATS client port open beyond loopback without authentication (--insecure): any client on the network can delete the app's streams or forge its records", "listen", client)
		case opts.TLSConfig == nil && len(opts.Users) > 0:
			log.Warn("NATS client port beyond loopback without TLS: passwords cross the network in clear (NKeys do not); set --nats-tls-cert and --nats-tls-key", "listen", client)
		}
	}
	if opts.Cluster.Port == 0 || loopback(opts.Cluster.Host) {
		return nil
	}
	route := net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(opts.Cluster.Port))
	switch {
	case !routesAuthenticated(opts) && !sec.Insecure:
		return fmt.Errorf("%w: route port %s: give the cluster's credentials (--cluster-password-file) or certificates (--cluster-tls-*), listen on loopback, or accept the risk with --insecure", ErrInsecure, route)
	case !routesAuthenticated(opts):
		log.Warn("NATS route port open beyond loopback without authentication (--insecure): any server on the network can join the cluster", "listen", route)
	case opts.Cluster.TLSConfig == nil:
		log.Warn("NATS route port beyond loopback without TLS: the cluster's traffic and route password cross the network in clear; set --cluster-tls-*", "listen", route)
	}
	return nil
}

// enableAccountJetStream enables JetStream for account name (none: the
// global account, which has it) if the configuration did not.
func enableAccountJetStream(ns *server.Server, name string) error {
	if name == "" {
		return nil
	}
	acc, err := ns.LookupAccount(name)
	if err != nil {
		return fmt.Errorf("%w: account %s: %w", ErrServerStart, name, err)
	}
	if acc.JetStreamEnabled() {
		return nil
	}
	if err := acc.EnableJetStream(nil, nil); err != nil {
		return fmt.Errorf("%w: JetStream for account %s: %w", ErrServerStart, name, err)
	}
	return nil
}
