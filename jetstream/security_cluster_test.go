package jetstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// A cluster whose routes need a password and certificates of its CA: its
// two nodes form it; a node without the password, or without a
// certificate, cannot join.
func TestClusterRouteSecurity(t *testing.T) {
	jstest.SkipUnlessCluster(t)
	const routePassword = "route-secret-77c2"
	pki := jstest.NewPKI(t, "n1", "n2", "n3")
	other := jstest.NewPKI(t, "n3")
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	listen := []string{jstest.FreeAddr(t), jstest.FreeAddr(t)}
	users := []jetstream.User{{Name: "dev-1", PasswordBcrypt: hash(t, devPassword), Role: jetstream.RoleDevice}}
	routes := []string{"nats-route://" + listen[0], "nats-route://" + listen[1]}
	security := func(p jstest.PKI, name, password string) jetstream.Security {
		return jetstream.Security{ClusterUser: "route", ClusterPassword: password, Users: users,
			ClusterTLS: jetstream.TLSFiles{CertFile: p.Cert(name), KeyFile: p.Key(name), CAFile: p.CA}}
	}
	start := func(ctx context.Context, name, clusterListen string, sec jetstream.Security) (*jetstream.Server, error) {
		return jetstream.StartServer(ctx, jetstream.ServerConfig{Name: name, Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
			App: "app", SourceSubjects: []string{"sensors.>"}, ClusterName: "sec", ClusterListen: clusterListen, Routes: routes, Logger: log.With("node", name), Security: sec})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	var (
		wg   sync.WaitGroup
		srvs [2]*jetstream.Server
		errs [2]error
	)
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("n%d", i+1)
			srvs[i], errs[i] = start(ctx, name, listen[i], security(pki, name, routePassword))
		}()
	}
	wg.Wait()
	formed := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("n%d: %v", i+1, err)
		}
		t.Cleanup(srvs[i].Shutdown)
	}

	// Clients authenticate on each node; the nodes' own identities work
	// across the routes: a device's publish on n2 reaches a stream the
	// node created through n1.
	n1, err := srvs[0].ConnectNode("node")
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	njs, _ := natsjs.New(n1)
	if _, err := njs.CreateStream(ctx, natsjs.StreamConfig{Name: "app_source", Subjects: []string{"sensors.>"}, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	dev, err := nats.Connect(srvs[1].ClientURL(), nats.UserInfo("dev-1", devPassword), nats.CustomInboxPrefix("_INBOX.dev-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	djs, _ := natsjs.New(dev)
	if _, err := djs.Publish(ctx, "sensors.d1.temp", []byte("1")); err != nil {
		t.Fatalf("device publish on n2: %v", err)
	}

	intruders := map[string]jetstream.Security{
		"wrong password":     security(pki, "n3", "guess"),
		"no TLS":             {ClusterUser: "route", ClusterPassword: routePassword, Users: users},
		"another CA":         security(other, "n3", routePassword),
		"no password at all": {ClusterTLS: security(pki, "n3", "").ClusterTLS},
	}
	var iwg sync.WaitGroup
	for name, sec := range intruders {
		iwg.Add(1)
		go func() {
			defer iwg.Done()
			ictx, icancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer icancel()
			s, err := start(ictx, "n3", "127.0.0.1:0", sec)
			if err == nil {
				s.Shutdown()
				t.Errorf("%s: joined the cluster", name)
			}
		}()
	}
	iwg.Wait()
	for i, s := range srvs {
		rz, err := s.NATSServer().Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		peer := fmt.Sprintf("n%d", 2-i)
		for _, r := range rz.Routes {
			if r.RemoteName != peer {
				t.Errorf("n%d has a route to %q", i+1, r.RemoteName)
			}
		}
		if len(rz.Routes) == 0 {
			t.Errorf("n%d has no route", i+1)
		}
	}
	if strings.Contains(logs.String(), routePassword) {
		t.Error("the route password is in the log")
	}
	if !strings.Contains(logs.String(), "uthorization") {
		t.Error("no authorization failure logged for the intruders")
	}
	if !strings.Contains(logs.String(), "every node of the cluster needs the same --cluster-password-file") {
		t.Error("no hint on the routes' credentials logged")
	}
	t.Logf("cluster formed in %v", formed)
}
