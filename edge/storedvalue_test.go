package edge

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/store"
)

// TestDamagedStoredValue: a value overwritten in the store's file (bbolt
// keeps no checksums of data pages) is found when an event reads it: the
// event goes to the dead-letter subject and the node logs the damage with
// the way out; removing the store file while the node is stopped rebuilds
// it from the changelog with the right values.
func TestDamagedStoredValue(t *testing.T) {
	dir := t.TempDir()
	spec := "name=c,source=e.*,key=subject:2,agg=count"
	n, stop := startNode(t, dir, spec)
	for range 3 {
		publish(t, n, "e.a", "{}")
	}
	waitValue(t, n, "c", "a", "3")
	stop()

	p := manager.PartitionOf([]byte("a"), 4)
	path := filepath.Join(dir, "tables", fmt.Sprintf("partition-%04d.db", p))
	st, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	offs, err := st.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(store.Batch{Mutations: []store.Mutation{{Table: "c", Key: []byte("a"), Value: []byte("x")}}, Offsets: offs}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	cfg := testConfig(t, dir, spec)
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	n, stop = runNode(t, cfg)
	publish(t, n, "e.a", "{}")
	waitFor(t, 10*time.Second, "the damage logged", func() bool {
		return strings.Contains(logs.String(), "a stored value does not decode") &&
			strings.Contains(logs.String(), fmt.Sprintf("partition=%d", p))
	})
	stop()
	if !strings.Contains(logs.String(), "sent to the dead-letter subject") {
		t.Errorf("the event was not refused:\n%s", logs.String())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// The refused event counts again if no commit of its partition passed
	// it before the stop (its source position was not persisted): 4 or 5.
	n, _ = startNode(t, dir, spec)
	publish(t, n, "e.a", "{}")
	waitFor(t, 10*time.Second, "a rebuilt count of a", func() bool {
		_, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/c/keys/a")
		v := fmt.Sprint(body["value"])
		return v == "4" || v == "5"
	})
}
