package edge

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgetables/edgetables/edge/builtin"
)

// syncBuffer is a bytes.Buffer a node logs to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDamagedStoresRebuiltOnRestart damages the store files of a stopped
// node where bbolt keeps what it needs to open them (100 random bytes over
// the first meta page, the second meta page, and the first meta page of
// the global tables' store), and checks that the restarted node rebuilds
// exactly those stores from their changelogs, says so in its log and its
// status, and serves every value. Before, the first start after such
// damage ended the process in bbolt's consistency check, and so did every
// start after it.
func TestDamagedStoresRebuiltOnRestart(t *testing.T) {
	dir := t.TempDir()
	config := func(t *testing.T) Config {
		cfg := testConfig(t, dir, "name=c,source=e.*,key=subject:2,agg=count")
		global, err := builtin.GlobalJSONTable("config")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tables = append(cfg.Tables, global)
		return cfg
	}
	const keys = 20
	n, stop := runNode(t, config(t))
	for i := range 2 * keys {
		publish(t, n, fmt.Sprintf("e.k%d", i%keys), "{}")
	}
	if code, body, _ := request(t, "PUT", n.HTTPAddr(), "/v1/tables/config/keys/site", `{"v":1}`, nil); code != http.StatusOK {
		t.Fatalf("PUT = %d %v", code, body)
	}
	for i := range keys {
		waitValue(t, n, "c", fmt.Sprintf("k%d", i), "2")
	}
	waitValue(t, n, "config", "site", `{"v":1}`)
	stop()

	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []struct {
		file string
		off  int64
	}{
		{"tables/partition-0000.db", 0},
		{"tables/partition-0001.db", 4096},
		{"global/partition-0000.db", 0},
	} {
		garbage := make([]byte, 100)
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		f, err := os.OpenFile(filepath.Join(dir, d.file), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteAt(garbage, d.off)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	logs := new(syncBuffer)
	cfg := config(t)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n, _ = runNode(t, cfg)
	for i := range keys {
		waitValue(t, n, "c", fmt.Sprintf("k%d", i), "2")
	}
	waitValue(t, n, "config", "site", `{"v":1}`)

	log := logs.String()
	for _, who := range []string{"partition=0", "partition=1", "partition=2", "partition=3", "global=true"} {
		want := who != "partition=2" && who != "partition=3"
		if got := logLine(log, "rebuilding store from the changelog", "store: corrupt", who); got != want {
			t.Errorf("%s: a rebuild from a corrupt store in the log: %v, want %v", who, got, want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
	_, body, _ := getJSON(t, n.HTTPAddr(), "/v1/status")
	for _, p := range body["partitions"].([]any) {
		rec, _ := p.(map[string]any)["recovery"].(map[string]any)
		id, _ := p.(map[string]any)["partition"].(float64)
		if want := id < 2; rec["rebuilt"] != want {
			t.Errorf("partition %v: recovery %v, want rebuilt %v", id, rec, want)
		}
	}
	publish(t, n, "e.k0", "{}")
	waitValue(t, n, "c", "k0", "3")
}

// logLine reports whether a line of log holds every one of parts.
func logLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
