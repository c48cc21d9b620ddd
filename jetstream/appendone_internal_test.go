package jetstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

// heldLink forwards TCP connections to a server and, while held, keeps
// back what the server sends (nothing is dropped: it is delivered on
// release).
type heldLink struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	held  bool
	conns []net.Conn
}

func newHeldLink(t *testing.T, target string) *heldLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &heldLink{ln: ln, target: target}
	l.cond = sync.NewCond(&l.mu)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		l.mu.Lock()
		l.held = false
		l.cond.Broadcast()
		for _, c := range l.conns {
			_ = c.Close()
		}
		l.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			l.mu.Lock()
			l.conns = append(l.conns, client, srv)
			l.mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(srv, client)
				_ = srv.Close()
			}()
			go func() {
				defer wg.Done()
				defer client.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := srv.Read(buf)
					l.mu.Lock()
					for l.held {
						l.cond.Wait()
					}
					l.mu.Unlock()
					if n > 0 {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l
}

func (l *heldLink) url() string { return "nats://" + l.ln.Addr().String() }

// hold keeps back the server's bytes until release.
func (l *heldLink) hold() {
	l.mu.Lock()
	l.held = true
	l.mu.Unlock()
}

func (l *heldLink) release() {
	l.mu.Lock()
	l.held = false
	l.cond.Broadcast()
	l.mu.Unlock()
}

// TestAppendMarkerAlone: a commit without records is one message. Its
// acknowledgement held back for half of the Append's time does not fail
// it (jetstreamext's fast publisher failed it a third of the way in,
// pinging the server on an empty subject), and a wrong expected end
// fences it like any Append.
func TestAppendMarkerAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	link := newHeldLink(t, srv.NATSServer().Addr().String())
	nc, err := nats.Connect(link.url(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChangelog(ctx, js, ChangelogConfig{App: "alone", Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	last, err := c.Append(ctx, 0, 0, fastTestRecords(3, "first"), port.CommitMarker{Node: "a"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("slow acknowledgement", func(t *testing.T) {
		const wait = 3 * time.Second
		actx, acancel := context.WithTimeout(ctx, wait)
		defer acancel()
		link.hold()
		time.AfterFunc(wait/2, link.release)
		got, err := c.Append(actx, 0, last, nil, port.CommitMarker{Node: "a", SourceSeq: 7})
		if err != nil {
			t.Fatalf("Append of a marker alone, its ack held for %s of %s: %v", wait/2, wait, err)
		}
		if got != last+1 {
			t.Fatalf("Append returned %d, want %d", got, last+1)
		}
		last = got
	})
	t.Run("fenced", func(t *testing.T) {
		if _, err := c.Append(ctx, 0, last-1, nil, port.CommitMarker{Node: "b"}); !errors.Is(err, port.ErrFenced) {
			t.Fatalf("Append expecting %d of a log ending at %d: %v, want %v", last-1, last, err, port.ErrFenced)
		}
		st, err := c.State(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st.Last != last {
			t.Fatalf("log ends at %d after a fenced Append, want %d", st.Last, last)
		}
	})
}
