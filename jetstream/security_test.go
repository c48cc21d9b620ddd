package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// Test credentials: made up for these tests, never used elsewhere.
const (
	devPassword   = "dev-secret-4f1c"
	adminPassword = "admin-secret-9a7e"
)

func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// violations collects a client's permission violations by subject.
type violations struct {
	mu   sync.Mutex
	subj map[string]bool
	ch   chan struct{}
}

func newViolations() *violations {
	return &violations{subj: map[string]bool{}, ch: make(chan struct{}, 100)}
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	// "nats: permissions violation for publish to "subject""
	if i := strings.Index(err.Error(), `"`); i >= 0 {
		v.subj[strings.Trim(err.Error()[i:], `"`)] = true
	}
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

// wait reports whether a violation for subject arrived within 3 s.
func (v *violations) wait(subject string) bool {
	deadline := time.After(3 * time.Second)
	for {
		v.mu.Lock()
		ok := v.subj[subject]
		v.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-v.ch:
		case <-deadline:
			return false
		}
	}
}

// secureServer starts a server of app "app" whose devices publish to
// sources (default sensors.>), with sec, its log at debug level in the
// returned buffer.
func secureServer(t *testing.T, sec jetstream.Security, sources ...string) (*jetstream.Server, *syncBuffer) {
	t.Helper()
	if len(sources) == 0 {
		sources = []string{"sensors.>"}
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "n1", Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		App:    "app", SourceSubjects: sources, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, logs
}

// nodeSource connects to srv as the node and creates the app's source
// stream, capturing sensors.>.
func nodeSource(ctx context.Context, t *testing.T, srv *jetstream.Server) (*nats.Conn, natsjs.JetStream, natsjs.Stream) {
	t.Helper()
	node, err := srv.ConnectNode("node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	njs, _ := natsjs.New(node)
	source, err := njs.CreateStream(ctx, natsjs.StreamConfig{Name: "app_source", Subjects: []string{"sensors.>"}})
	if err != nil {
		t.Fatal(err)
	}
	return node, njs, source
}

func TestRoles(t *testing.T) {
	readerKP, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	readerPub, _ := readerKP.PublicKey()
	devHash, adminHash := hash(t, devPassword), hash(t, adminPassword)
	srv, logs := secureServer(t, jetstream.Security{Users: []jetstream.User{
		{Name: "dev-1", PasswordBcrypt: devHash, Role: jetstream.RoleDevice},
		{Name: "dash", NKey: readerPub, Role: jetstream.RoleReader},
		{Name: "ops", PasswordBcrypt: adminHash, Role: jetstream.RoleAdmin},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The node: full rights in process.
	node, njs, source := nodeSource(ctx, t, srv)
	changelog, err := njs.CreateStream(ctx, natsjs.StreamConfig{Name: "app_changelog_0", Subjects: []string{"app.changelog.0.>", "app.commit.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := njs.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: "app_group"}); err != nil {
		t.Fatal(err)
	}
	stopQueries, err := jetstream.ServeQueries(node, "app", "n1", func(context.Context, []byte) []byte { return []byte("answer") })
	if err != nil {
		t.Fatal(err)
	}
	defer stopQueries()

	t.Run("no credentials", func(t *testing.T) {
		for _, opt := range []nats.Option{nats.Name("anonymous"), nats.UserInfo("dev-1", "wrong"), nats.UserInfo("ops", devPassword)} {
			if nc, err := nats.Connect(srv.ClientURL(), opt, nats.NoReconnect()); err == nil {
				nc.Close()
				t.Fatal("connected")
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("error %v, want an authorization violation", err)
			}
		}
		if nc, err := srv.Connect("tcp"); err == nil { // Connect has no credentials
			nc.Close()
			t.Fatal("Connect without credentials succeeded")
		}
	})

	t.Run("device", func(t *testing.T) {
		v := newViolations()
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("dev-1", devPassword),
			nats.CustomInboxPrefix(jetstream.InboxPrefix("dev-1")), nats.ErrorHandler(v.handler))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := natsjs.New(nc)
		ack, err := js.Publish(ctx, "sensors.d1.temp", []byte(`{"value":21}`))
		if err != nil {
			t.Fatalf("device publish to its source: %v", err)
		}
		if ack.Stream != "app_source" || ack.Sequence != 1 {
			t.Errorf("ack %+v", ack)
		}
		for _, subj := range []string{
			"$JS.API.STREAM.DELETE.app_changelog_0", "$JS.API.STREAM.PURGE.app_source",
			"app.changelog.0.count.YQ", "app.commit.0", "$KV.app_group.n1",
			"app.global.g.YQ", "app.query.n1", "app.dlq.count", "_INBOX.dash.x",
		} {
			if err := nc.Publish(subj, []byte("999999")); err != nil {
				t.Fatal(err)
			}
			if !v.wait(subj) {
				t.Errorf("publish to %s: no permission violation", subj)
			}
		}
		for _, subj := range []string{"sensors.>", "app.changelog.>", "_INBOX.dash.>", "$JS.API.>"} {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			if !v.wait(subj) {
				t.Errorf("subscribe to %s: no permission violation", subj)
			}
		}
		// The JetStream API times out: the request never reaches it.
		dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer dcancel()
		if err := js.DeleteStream(dctx, "app_changelog_0"); err == nil {
			t.Error("device deleted a stream")
		}
		if _, err := changelog.Info(ctx); err != nil {
			t.Errorf("changelog after the device's attempts: %v", err)
		}
		if info, _ := changelog.Info(ctx); info != nil && info.State.Msgs != 0 {
			t.Errorf("changelog holds %d messages, want 0", info.State.Msgs)
		}
		if kv, err := njs.KeyValue(ctx, "app_group"); err != nil {
			t.Error(err)
		} else if _, err := kv.Get(ctx, "n1"); !errors.Is(err, natsjs.ErrKeyNotFound) {
			t.Errorf("group key n1: %v, want not found", err)
		}
		if info, _ := source.Info(ctx); info.State.Msgs != 1 {
			t.Errorf("source holds %d messages, want 1", info.State.Msgs)
		}

		// A reply subject is not checked against the publisher's
		// permissions: the acknowledgements of these allowed events must
		// not land where the app's streams capture them.
		forged := []string{"app.changelog.0.count.YQ", "app.commit.0", "$KV.app_group.leader"}
		for _, reply := range forged {
			m := nats.NewMsg("sensors.d1.temp")
			m.Data, m.Reply = []byte(`{"value":22}`), reply
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		waitMsgs(t, source, 1+uint64(len(forged)))
		time.Sleep(200 * time.Millisecond) // the acknowledgements are sent
		if info, _ := changelog.Info(ctx); info == nil || info.State.Msgs != 0 {
			t.Errorf("changelog after acknowledgements sent to its subjects: %+v, want no message", info)
		}
		if kv, err := njs.KeyValue(ctx, "app_group"); err != nil {
			t.Error(err)
		} else if e, err := kv.Get(ctx, "leader"); !errors.Is(err, natsjs.ErrKeyNotFound) {
			t.Errorf("group key leader after an acknowledgement sent to it: %v %v, want not found", e, err)
		}
	})

	t.Run("reader", func(t *testing.T) {
		v := newViolations()
		nc, err := nats.Connect(srv.ClientURL(), nats.Nkey(readerPub, readerKP.Sign),
			nats.CustomInboxPrefix(jetstream.InboxPrefix("dash")), nats.ErrorHandler(v.handler))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		m, err := nc.Request(jetstream.QuerySubject("app", "n1"), []byte("q"), 5*time.Second)
		if err != nil || string(m.Data) != "answer" {
			t.Fatalf("reader query: %v", err)
		}
		// The answer to a query whose reply subject is a bucket's key
		// must not be stored there.
		if err := nc.PublishRequest(jetstream.QuerySubject("app", "n1"), "$KV.app_group.forged", []byte("q")); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Request(jetstream.QuerySubject("app", "n1"), []byte("q"), 5*time.Second); err != nil {
			t.Fatal(err) // answered after the forged one
		}
		time.Sleep(200 * time.Millisecond)
		if kv, err := njs.KeyValue(ctx, "app_group"); err != nil {
			t.Error(err)
		} else if e, err := kv.Get(ctx, "forged"); !errors.Is(err, natsjs.ErrKeyNotFound) {
			t.Errorf("group key forged after a query answered to it: %v %v, want not found", e, err)
		}
		for _, subj := range []string{"sensors.d1.temp", "app.changelog.0.count.YQ", "$JS.API.INFO"} {
			if err := nc.Publish(subj, nil); err != nil {
				t.Fatal(err)
			}
			if !v.wait(subj) {
				t.Errorf("reader publish to %s: no permission violation", subj)
			}
		}
	})

	t.Run("admin", func(t *testing.T) {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("ops", adminPassword))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := natsjs.New(nc)
		if _, err := js.AccountInfo(ctx); err != nil {
			t.Errorf("admin: %v", err)
		}
	})

	for _, secret := range []string{devPassword, adminPassword, devHash, adminHash} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the server log holds a secret %q", secret)
		}
	}
}

func TestUsersValidation(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	h := hash(t, "x")
	tests := []struct {
		name string
		u    jetstream.User
	}{
		{"plain password", jetstream.User{Name: "a", PasswordBcrypt: "secret", Role: jetstream.RoleDevice}},
		{"no credential", jetstream.User{Name: "a", Role: jetstream.RoleDevice}},
		{"two credentials", jetstream.User{Name: "a", PasswordBcrypt: h, NKey: pub, Role: jetstream.RoleDevice}},
		{"seed as nkey", jetstream.User{Name: "a", NKey: string(seed), Role: jetstream.RoleDevice}},
		{"bad role", jetstream.User{Name: "a", NKey: pub, Role: "root"}},
		{"bad name", jetstream.User{Name: "a.b", NKey: pub, Role: jetstream.RoleDevice}},
	}
	for _, tt := range tests {
		if err := jetstream.ValidateUsers([]jetstream.User{tt.u}); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	ok := []jetstream.User{{Name: "a", PasswordBcrypt: h, Role: jetstream.RoleDevice}, {Name: "b", NKey: pub, Role: jetstream.RoleReader}}
	if err := jetstream.ValidateUsers(ok); err != nil {
		t.Error(err)
	}
	if err := jetstream.ValidateUsers(append(ok, ok[0])); err == nil {
		t.Error("a duplicate user was accepted")
	}
}

func TestInsecureListen(t *testing.T) {
	tests := []struct {
		name string
		cfg  jetstream.ServerConfig
		want error
	}{
		{"client port open", jetstream.ServerConfig{Listen: "0.0.0.0:0"}, jetstream.ErrInsecure},
		{"route port open", jetstream.ServerConfig{Name: "r", App: "app", ClusterListen: "0.0.0.0:0",
			Security: jetstream.Security{Users: []jetstream.User{{Name: "d", PasswordBcrypt: hash(t, "x"), Role: jetstream.RoleDevice}}}},
			jetstream.ErrInsecure},
		{"client port open, insecure", jetstream.ServerConfig{Listen: "0.0.0.0:0", Security: jetstream.Security{Insecure: true}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.ClusterListen != "" {
				jstest.SkipUnlessCluster(t)
			}
			logs := &syncBuffer{}
			tt.cfg.StoreDir = t.TempDir()
			tt.cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			srv, err := jetstream.StartServer(ctx, tt.cfg)
			if srv != nil {
				srv.Shutdown()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("StartServer: %v, want %v", err, tt.want)
			}
			if tt.want == nil && !strings.Contains(logs.String(), "without authentication") {
				t.Errorf("no warning in the log:\n%s", logs)
			}
		})
	}
}

func TestClientTLS(t *testing.T) {
	pki := jstest.NewPKI(t, "server", "client")
	other := jstest.NewPKI(t, "client")
	srv, _ := secureServer(t, jetstream.Security{
		Users: []jetstream.User{{Name: "dev-1", PasswordBcrypt: hash(t, devPassword), Role: jetstream.RoleDevice}},
		TLS:   jetstream.TLSFiles{CertFile: pki.Cert("server"), KeyFile: pki.Key("server"), CAFile: pki.CA},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := srv.ConnectNode("node") // in process: no certificate needed
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	njs, _ := natsjs.New(node)
	if _, err := njs.CreateStream(ctx, natsjs.StreamConfig{Name: "app_source", Subjects: []string{"sensors.>"}}); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	user := nats.UserInfo("dev-1", devPassword)
	nc, err := nats.Connect(url, user, nats.RootCAs(pki.CA), nats.ClientCert(pki.Cert("client"), pki.Key("client")),
		nats.CustomInboxPrefix(jetstream.InboxPrefix("dev-1")))
	if err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("TLS not required")
	}
	js, _ := natsjs.New(nc)
	if _, err := js.Publish(ctx, "sensors.d1.temp", []byte("1")); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	refused := map[string][]nats.Option{
		"plain":                 {user},
		"no client certificate": {user, nats.RootCAs(pki.CA)},
		"certificate of another CA": {user, nats.RootCAs(pki.CA),
			nats.ClientCert(other.Cert("client"), other.Key("client"))},
		"server not trusted": {user, nats.ClientCert(pki.Cert("client"), pki.Key("client"))},
	}
	for name, opts := range refused {
		u := url
		if name == "plain" {
			u = srv.ClientURL()
		}
		if nc, err := nats.Connect(u, append(opts, nats.NoReconnect(), nats.Timeout(2*time.Second))...); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
}

// waitMsgs waits until st holds n messages.
func waitMsgs(t *testing.T, st natsjs.Stream, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := st.Info(context.Background())
		if err == nil && info.State.Msgs == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %v messages (%v), want %d", info, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeviceOverlappingSources: sources that overlap (one table reads
// sensors.>, another sensors.*.temp) are imported into the clients'
// account each; a device's event matching both is stored once, and its
// publish is acknowledged.
func TestDeviceOverlappingSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, _ := secureServer(t, jetstream.Security{Users: []jetstream.User{{Name: "dev-1", PasswordBcrypt: hash(t, devPassword), Role: jetstream.RoleDevice}}},
		"sensors.>", "sensors.*.temp")
	_, _, source := nodeSource(ctx, t, srv)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("dev-1", devPassword), nats.CustomInboxPrefix(jetstream.InboxPrefix("dev-1")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	for i, subj := range []string{"sensors.d1.temp", "sensors.d1.hum", "sensors.d2.temp"} {
		ack, err := js.Publish(ctx, subj, []byte(`{}`))
		if err != nil || ack.Sequence != uint64(i+1) {
			t.Fatalf("publish to %s: %+v %v, want sequence %d", subj, ack, err, i+1)
		}
	}
	time.Sleep(200 * time.Millisecond)
	waitMsgs(t, source, 3)
}
