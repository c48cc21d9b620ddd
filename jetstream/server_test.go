package jetstream_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestStartServerErrors(t *testing.T) {
	srv, _, _ := jstest.Start(t)
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  jetstream.ServerConfig
	}{
		{"address in use", jetstream.ServerConfig{Listen: u.Host, StoreDir: t.TempDir()}},
		{"store dir is a file", jetstream.ServerConfig{Listen: "127.0.0.1:0", StoreDir: file}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quiet
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			s, err := jetstream.StartServer(ctx, tt.cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("StartServer succeeded")
			}
			if !errors.Is(err, jetstream.ErrServerStart) {
				t.Errorf("error %v does not wrap ErrServerStart", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("failing took %v", took)
			}
			t.Logf("%v", err)
		})
	}
	if _, err := jetstream.StartServer(context.Background(), jetstream.ServerConfig{}); err == nil {
		t.Error("StartServer without StoreDir succeeded")
	}
}

func TestServerConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := jetstream.StartServer(ctx, jetstream.ServerConfig{Name: "n1", Listen: "127.0.0.1:0", StoreDir: t.TempDir(), SyncAlways: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("client")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.ConnectedUrl() == "" || srv.NATSServer().Name() != "n1" {
		t.Errorf("connected to %q, server %q", nc.ConnectedUrl(), srv.NATSServer().Name())
	}
	js, err := natsjsNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := jetstream.WaitForJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	jc := srv.NATSServer().JetStreamConfig()
	if jc == nil || jc.MaxMemory != jetstream.DefaultMaxMemory || jc.MaxStore != jetstream.DefaultMaxStore || !jc.SyncAlways {
		t.Errorf("JetStream config %+v", jc)
	}
	srv.Shutdown()
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if err := jetstream.WaitForJetStream(wctx, js); err == nil {
		t.Error("WaitForJetStream succeeded after shutdown")
	}
}

func natsjsNew(nc *nats.Conn) (natsjs.JetStream, error) { return natsjs.New(nc) }
