package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
)

// Two nodes on external NATS whose user has only the permissions README.md
// documents (testdata/external-node.conf): they form a group, count events,
// answer routed reads and write a global table.
func TestExternalNodePermissions(t *testing.T) {
	const nodePassword = "external-node-secret-e81a"
	h, err := bcrypt.GenerateFromPassword([]byte(nodePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("testdata/external-node.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(string(text), "PASSWORD_HASH", string(h), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Security: jetstream.Security{ConfigFile: conf}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	var nodes []*Node
	logs := &logBuffer{}
	defer func() {
		if strings.Contains(strings.ToLower(logs.String()), "permissions violation") {
			t.Errorf("permission violations:\n%s", logs)
		}
	}()
	for i := range 2 {
		cfg := testConfig(t, t.TempDir(), "name=count,source=sensors.*.temp,key=subject:2,agg=count")
		cfg.Name = fmt.Sprintf("n%d", i+1)
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		cfg.NATSURLs = []string{srv.ClientURL()}
		cfg.NATS = jetstream.ExternalOptions{User: "edgetables-node", Password: nodePassword}
		table, err := builtin.GlobalJSONTable("sites")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tables = append(cfg.Tables, table)
		n, _ := runNode(t, cfg)
		nodes = append(nodes, n)
	}
	nc, err := srv.ConnectNode("publisher")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	for i := range 20 {
		if _, err := js.Publish(ctx, fmt.Sprintf("sensors.d%d.temp", i%10), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	// Every key read on both nodes: half of them are routed to the other.
	for _, n := range nodes {
		for k := range 10 {
			waitValue(t, n, "count", fmt.Sprintf("d%d", k), "2")
		}
	}
	if code, body, _ := request(t, "PUT", nodes[0].HTTPAddr(), "/v1/tables/sites/keys/s1", `{"city":"Lyon"}`, nil); code != 200 {
		t.Fatalf("PUT global: %d %v", code, body)
	}
	waitValue(t, nodes[1], "sites", "s1", `{"city":"Lyon"}`)
}
