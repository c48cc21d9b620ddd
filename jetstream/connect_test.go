package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

// startTokenServer starts a plain nats-server (no JetStream) on port that
// requires token.
func startTokenServer(t *testing.T, port int, token string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, Authorization: token, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("token server not ready")
	}
	return ns
}

func TestConnectExternal(t *testing.T) {
	srv, _, _ := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := jetstream.ConnectExternal(ctx, []string{srv.ClientURL()}, jetstream.ExternalOptions{Name: "ext", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := jetstream.WaitForJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}

	tok := startTokenServer(t, -1, "s3cret")
	nc2, err := jetstream.ConnectExternal(ctx, []string{tok.ClientURL()}, jetstream.ExternalOptions{Token: "s3cret", Logger: quiet})
	if err != nil {
		t.Fatalf("right token: %v", err)
	}
	nc2.Close()
	start := time.Now()
	if _, err := jetstream.ConnectExternal(ctx, []string{tok.ClientURL()}, jetstream.ExternalOptions{Token: "wrong", Logger: quiet}); err == nil {
		t.Fatal("wrong token accepted")
	} else if time.Since(start) > time.Second || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wrong token: %v after %v; want a fast authorization error", err, time.Since(start))
	}

	for _, o := range []jetstream.ExternalOptions{
		{Token: "t", User: "u"},
		{CredsFile: "f", Token: "t"},
		{CertFile: "c"},
	} {
		if _, err := jetstream.ConnectExternal(ctx, []string{srv.ClientURL()}, o); err == nil {
			t.Errorf("ConnectExternal(%+v) succeeded", o)
		}
	}
	if _, err := jetstream.ConnectExternal(ctx, nil, jetstream.ExternalOptions{}); err == nil {
		t.Error("ConnectExternal without URLs succeeded")
	}
}

// TestConnectExternalWaitsForServer: ConnectExternal retries while nothing
// listens, until the server comes up or ctx ends.
func TestConnectExternalWaitsForServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	_, err = jetstream.ConnectExternal(ctx, []string{url}, jetstream.ExternalOptions{Logger: logger})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no server: %v, want DeadlineExceeded", err)
	}
	// It says what it waits for, once, rather than nothing.
	if n := strings.Count(logged.String(), "waiting for NATS"); n != 1 {
		t.Errorf("%d warnings that it waits for NATS, want 1; log:\n%s", n, logged.String())
	}
	if took := time.Since(start); took < 600*time.Millisecond || took > 2*time.Second {
		t.Errorf("gave up after %v, want about 700ms", took)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	done := make(chan error, 1)
	go func() {
		nc, err := jetstream.ConnectExternal(ctx2, []string{url}, jetstream.ExternalOptions{Token: "t", Logger: quiet})
		if err == nil {
			nc.Close()
		}
		done <- err
	}()
	select { // nothing listens yet: it keeps trying
	case err := <-done:
		t.Fatalf("returned before the server started: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	startTokenServer(t, port, "t")
	if err := <-done; err != nil {
		t.Fatalf("after the server started: %v", err)
	}
}
