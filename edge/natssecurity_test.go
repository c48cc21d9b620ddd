package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgetables/edgetables/jetstream"
)

// A node with users: a device's events reach its table, the device can
// touch nothing else, and no secret reaches the log or /v1/status.
func TestNodeWithNATSUsers(t *testing.T) {
	const devPassword = "node-test-dev-secret-31d9"
	h, err := bcrypt.GenerateFromPassword([]byte(devPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg := testConfig(t, t.TempDir(), "name=temps,source=sensors.*.temp,key=subject:2,agg=count")
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.NATSSecurity = jetstream.Security{Users: []jetstream.User{{Name: "dev-1", PasswordBcrypt: string(h), Role: jetstream.RoleDevice}}}
	n, _ := runNode(t, cfg)

	if nc, err := nats.Connect(n.ClientURL(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	var denied sync.Map
	nc, err := nats.Connect(n.ClientURL(), nats.UserInfo("dev-1", devPassword),
		nats.CustomInboxPrefix(jetstream.InboxPrefix("dev-1")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				denied.Store(err.Error(), true)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 3 {
		if _, err := js.Publish(ctx, "sensors.d1.temp", []byte("{}")); err != nil {
			t.Fatalf("device publish: %v", err)
		}
	}
	waitValue(t, n, "temps", "d1", "3")
	// A publish to an undeclared subject, a forged record, a stream delete.
	for _, subj := range []string{"other.d1.temp", jetstream.RecordSubject("edgetables", 0, "temps", []byte("d1")), "$JS.API.STREAM.DELETE.edgetables_changelog_0"} {
		if err := nc.Publish(subj, []byte("999999")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	count := 0
	for ; count < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		count = 0
		denied.Range(func(any, any) bool { count++; return true })
	}
	if count != 3 {
		t.Errorf("%d permission violations, want 3", count)
	}
	waitValue(t, n, "temps", "d1", "3")

	resp, err := http.Get("http://" + n.HTTPAddr() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	status, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{devPassword, string(h)} {
		if strings.Contains(logs.String(), secret) || strings.Contains(string(status), secret) {
			t.Errorf("secret %q in the log or /v1/status", secret)
		}
	}
}
