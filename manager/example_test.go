package manager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// A word count: events on "words" carry one word each; the word is the key,
// so each word is counted in its own partition.
func Example_wordCount() {
	counts := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "word-counts", Keys: codec.String{}, Values: codec.Int64{}})
	agent := manager.Agent{
		Name:     "count-words",
		Subjects: []string{"words"},
		Key:      func(e *manager.Event) ([]byte, error) { return e.Data, nil },
		Process: func(e *manager.Event) error {
			n, err := counts.Get(e, string(e.Key))
			if err != nil {
				return err
			}
			return counts.Set(e, string(e.Key), n+1)
		},
	}

	dir, _ := os.MkdirTemp("", "wordcount")
	defer os.RemoveAll(dir)
	node, _ := edge.NewNode(edge.Config{Name: "example", DataDir: dir, NATSListen: "127.0.0.1:0", HTTPListen: "off",
		Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- node.Run(ctx) }()
	<-node.Started()

	nc, _ := nats.Connect(node.ClientURL())
	defer nc.Close()
	js, _ := natsjs.New(nc)
	for _, w := range strings.Fields("the cat saw the dog and the bird") {
		_, _ = js.Publish(ctx, "words", []byte(w))
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		the, _, _ := counts.Lookup(ctx, "the")
		bird, _, _ := counts.Lookup(ctx, "bird")
		if the == 3 && bird == 1 {
			break
		}
	}
	the, _, _ := counts.Lookup(ctx, "the")
	bird, _, _ := counts.Lookup(ctx, "bird")
	fmt.Println("the:", the, "bird:", bird)
	cancel()
	<-done
	// Output: the: 3 bird: 1
}
