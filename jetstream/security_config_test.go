package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// A nats-server configuration file: its accounts, users and permissions
// apply as NATS documents them, the node joins the account named by
// Security.Account, and users of Security.Users join it too.
func TestSecurityConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	text := fmt.Sprintf(`
accounts {
  APP {
    users: [
      {user: sensor, password: "%s",
       permissions: {publish: {allow: ["sensors.>"]}, subscribe: {allow: ["_INBOX.sensor.>"]}}}
    ]
  }
  OTHER {
    users: [{user: stranger, password: "%s"}]
  }
}
`, hash(t, devPassword), hash(t, devPassword))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, _ := secureServer(t, jetstream.Security{ConfigFile: conf, Account: "APP",
		Users: []jetstream.User{{Name: "ops", PasswordBcrypt: hash(t, adminPassword), Role: jetstream.RoleAdmin}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := srv.ConnectNode("node")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	njs, _ := natsjs.New(node)
	if _, err := njs.CreateStream(ctx, natsjs.StreamConfig{Name: "app_source", Subjects: []string{"sensors.>"}}); err != nil {
		t.Fatalf("the node in account APP: %v", err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("sensor", devPassword), nats.CustomInboxPrefix("_INBOX.sensor"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	if _, err := js.Publish(ctx, "sensors.s1.temp", []byte("1")); err != nil {
		t.Fatalf("config file user publish: %v", err)
	}
	admin, err := nats.Connect(srv.ClientURL(), nats.UserInfo("ops", adminPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, _ := natsjs.New(admin)
	if s, err := ajs.Stream(ctx, "app_source"); err != nil {
		t.Fatalf("admin in account APP: %v", err)
	} else if info, _ := s.Info(ctx); info.State.Msgs != 1 {
		t.Errorf("source holds %d messages, want 1", info.State.Msgs)
	}
	// Another account does not see APP's subjects.
	other, err := nats.Connect(srv.ClientURL(), nats.UserInfo("stranger", devPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sub, err := other.SubscribeSync("sensors.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "sensors.s1.temp", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("account OTHER received %s", m.Subject)
	}
}

func TestSecurityConfigFileRefused(t *testing.T) {
	tests := map[string]string{
		"token":           `authorization { token: "$2a$04$abcdefghijklmnopqrstuuRk8.ObTDnd5FU7E0AC6d5CX/RBNR3cq" }`,
		"single user":     `authorization { user: a, password: b }`,
		"syntax":          `authorization {`,
		"unknown account": `accounts { A { users: [{user: a, password: b}] } }`,
		"clients account": `accounts { EDGETABLES_CLIENTS { users: [{user: a, password: b}] } }`,
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "nats.conf")
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			sec := jetstream.Security{ConfigFile: conf}
			switch name {
			case "unknown account":
				sec.Account = "B"
			case "clients account":
				sec.Users = []jetstream.User{{Name: "dev-1", PasswordBcrypt: hash(t, devPassword), Role: jetstream.RoleDevice}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: quiet, Security: sec, App: "app"})
			if err == nil {
				srv.Shutdown()
				t.Fatal("started")
			}
			if name == "clients account" && !strings.Contains(err.Error(), "EDGETABLES_CLIENTS is edgetables' own") {
				t.Errorf("error %v, want the clients account named", err)
			}
			if strings.Contains(err.Error(), "$2a$") {
				t.Errorf("the error holds the hash: %v", err)
			}
			t.Log(err)
		})
	}
}
