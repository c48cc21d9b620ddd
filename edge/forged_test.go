package edge

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
)

// TestForgedChangelogMessages: messages in the changelogs that are no
// records (a client allowed the app's subjects published them) are
// skipped: the partitions they land in recover, keep counting exactly,
// and recover again after a restart. (Before, one such message failed
// every recovery of its partition for good.)
func TestForgedChangelogMessages(t *testing.T) {
	dir, n, stop := startCounting(t)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	countEach(t, n, keys, 1)
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		for _, subj := range []string{
			fmt.Sprintf("edgetables.changelog.%d.c.!!!bad", p),
			fmt.Sprintf("edgetables.changelog.%d.nodot", p),
		} {
			if err := nc.Publish(subj, []byte("garbage")); err != nil {
				t.Fatal(err)
			}
		}
	}
	nc.Close()
	countEach(t, n, keys, 2)
	stop()

	n, _ = startNode(t, dir, countSpec)
	countEach(t, n, keys, 3)
}

// TestDeletedChangelogTail: the last messages of every changelog removed
// by hand (nats stream rmm) and the stores lost: each partition is
// rebuilt from what is left, takes its log over and counts on. (Before,
// its recovery stopped for good: "replay stopped at N, before the log's
// end M".)
func TestDeletedChangelogTail(t *testing.T) {
	dir, n, stop := startCounting(t)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	countEach(t, n, keys, 1)
	countEach(t, n, keys, 2)
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	ctx := context.Background()
	for p := range 4 {
		s, err := js.Stream(ctx, jetstream.ChangelogStream("edgetables", p))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := info.State.LastSeq
		for seq := last; seq+2 > last && seq > 0; seq-- {
			if err := s.DeleteMsg(ctx, seq); err != nil {
				t.Fatalf("partition %d: delete %d of %d: %v", p, seq, last, err)
			}
		}
	}
	nc.Close()
	stop()
	if err := os.RemoveAll(filepath.Join(dir, "tables")); err != nil {
		t.Fatal(err)
	}

	// The removed messages held commit markers: the source events the
	// node still keeps after the last marker left are counted again. The
	// counts settle; then each new event counts once.
	cfg := testConfig(t, dir, countSpec)
	logs := logTo(&cfg)
	n, _ = runNode(t, cfg)
	before := settledCounts(t, n, "c", keys)
	if got := strings.Count(logs.String(), "the changelog's last messages were removed"); got == 0 || got > 4 {
		t.Errorf("%d warnings that a changelog's last messages were removed; want one for each partition whose tail went (at most 4)", got)
	}
	for _, k := range keys {
		publish(t, n, "s."+k, `{}`)
	}
	for _, k := range keys {
		waitValue(t, n, "c", k, strconv.Itoa(before[k]+1))
	}
}

// settledCounts returns the counts of keys in table once two reads 300 ms
// apart agree (a key not found counts 0).
func settledCounts(t *testing.T, n *Node, table string, keys []string) map[string]int {
	t.Helper()
	read := func() map[string]int {
		out := map[string]int{}
		for _, k := range keys {
			code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/"+table+"/keys/"+k)
			if code == 200 {
				out[k] = int(body["value"].(float64))
			}
		}
		return out
	}
	prev := read()
	for range 50 {
		time.Sleep(300 * time.Millisecond)
		cur := read()
		if maps.Equal(prev, cur) {
			return cur
		}
		prev = cur
	}
	t.Fatalf("%s's counts did not settle: %v", table, prev)
	return nil
}

// TestForgedCommitMarkers: a message that is no commit marker, published
// on a partition's commit subject, fences the partition's owner for a
// moment (the log grew under it); the owner takes the log over again,
// skipping it, and every event counts once, before and after a restart.
func TestForgedCommitMarkers(t *testing.T) {
	dir, n, stop := startCounting(t)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	countEach(t, n, keys, 1)
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if err := nc.Publish(fmt.Sprintf("edgetables.commit.%d", p), []byte("not a marker")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	for i := 2; i <= 4; i++ {
		countEach(t, n, keys, i)
	}
	stop()

	n, _ = startNode(t, dir, countSpec)
	countEach(t, n, keys, 5)
}

// countSpec is the count table c of the forged tests, over s.*.
const countSpec = "name=c,source=s.*,key=subject:2,agg=count"

// startCounting starts a node with countSpec in a new data directory.
func startCounting(t *testing.T) (dir string, n *Node, stop func()) {
	t.Helper()
	dir = t.TempDir()
	n, stop = startNode(t, dir, countSpec)
	return dir, n, stop
}

// countEach publishes one event for each key to the count table c (source
// s.*) and waits until each key counts want.
func countEach(t *testing.T, n *Node, keys []string, want int) {
	t.Helper()
	for _, k := range keys {
		publish(t, n, "s."+k, `{}`)
	}
	for _, k := range keys {
		waitValue(t, n, "c", k, strconv.Itoa(want))
	}
}
