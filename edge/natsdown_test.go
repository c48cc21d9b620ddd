package edge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgetables/edgetables/jetstream/jstest"
)

// startExternal starts a nats-server with JetStream on port, storing in
// dir.
func startExternal(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return ns
}

// TestReadyzWhileNATSIsDown: a node on an external NATS server (--nats-url)
// is not ready while the server is down, and says why; it is ready again
// once the server is back.
func TestReadyzWhileNATSIsDown(t *testing.T) {
	port, dir := jstest.FreePort(t), t.TempDir()
	ns := startExternal(t, port, dir)
	cfg := testConfig(t, t.TempDir(), "name=c,source=s.*,key=subject:2,agg=count")
	cfg.NATSURLs = []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}
	n, _ := runNode(t, cfg)
	publish(t, n, "s.a", `{}`)
	waitValue(t, n, "c", "a", "1")

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, 10*time.Second, "503 with NATS not connected", func() bool {
		code, body, _ := getJSON(t, n.HTTPAddr(), "/readyz")
		return code == 503 && strings.Contains(fmt.Sprint(body), "NATS: not connected")
	})
	ns = startExternal(t, port, dir)
	defer ns.Shutdown()
	waitFor(t, 30*time.Second, "ready again", func() bool {
		code, _, _ := getJSON(t, n.HTTPAddr(), "/readyz")
		return code == 200
	})
	publish(t, n, "s.a", `{}`)
	waitValue(t, n, "c", "a", "2")
}
