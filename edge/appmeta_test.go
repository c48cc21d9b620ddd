package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// logBuffer collects a node's log for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logTo makes cfg log into a new buffer, which it returns.
func logTo(cfg *Config) *logBuffer {
	b := new(logBuffer)
	cfg.Logger = slog.New(slog.NewTextHandler(b, nil))
	return b
}

// runRefused runs a node with cfg and returns its error, which must wrap
// ErrAppShape and come before the node started anything.
func runRefused(t *testing.T, cfg Config) error {
	t.Helper()
	return runFailing(t, cfg, ErrAppShape)
}

// runFailing runs a node with cfg and returns its error, which must wrap
// want and come before the node started.
func runFailing(t *testing.T, cfg Config, want error) error {
	t.Helper()
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = n.Run(ctx)
	if !errors.Is(err, want) {
		t.Fatalf("Run = %v, want an error wrapping %v", err, want)
	}
	select {
	case <-n.Started():
		t.Error("the refused node started")
	default:
	}
	return err
}

// mustMention fails unless msg contains every one of want.
func mustMention(t *testing.T, msg string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%q is not in:\n%s", w, msg)
		}
	}
}

// appMeta reads the app's metadata through the node's NATS server.
func appMeta(t *testing.T, url, app string) (jetstream.AppMeta, uint64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	m, err := jetstream.NewMeta(js, app)
	if err != nil {
		t.Fatal(err)
	}
	doc, rev, err := m.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return doc, rev
}

// streamStates returns every stream on the server at url with its message
// count and last sequence.
func streamStates(t *testing.T, url string) map[string]string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	out := map[string]string{}
	lister := js.ListStreams(context.Background())
	for info := range lister.Info() {
		out[info.Config.Name] = fmt.Sprintf("msgs=%d last=%d", info.State.Msgs, info.State.LastSeq)
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dirState lists the files under dir (but JetStream's, which its server
// writes whatever the node does) with their sizes and times.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.IsDir() && d.Name() == "jetstream" {
				return filepath.SkipDir
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.Name() != lockFileName {
			out = append(out, fmt.Sprintf("%s %d %s", path, info.Size(), info.ModTime()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshot returns the streams of the app in dir (read by a server of its
// own on it) and the files of dir.
func snapshot(t *testing.T, dir string) (map[string]string, []string) {
	t.Helper()
	srv, _, _ := jstest.StartIn(t, dir)
	streams := streamStates(t, srv.ClientURL())
	srv.Shutdown()
	return streams, dirState(t, dir)
}

// TestPartitionCountRefused: an app created with 8 partitions refuses a
// node with 4 (or 16) before it changes anything: the error names both
// counts and the way out, and the streams, the stores and the metadata
// are as they were; with 8 again, the node serves every key. (Before, the
// node with 4 ran and lost half of the keys from its listings.)
func TestPartitionCountRefused(t *testing.T) {
	dir := t.TempDir()
	spec := "name=c,source=e.*,key=subject:2,agg=count"
	cfg := testConfig(t, dir, spec)
	cfg.Partitions = 8
	n, stop := runNode(t, cfg)
	for i := range 40 {
		publish(t, n, fmt.Sprintf("e.k%d", i%20), "{}")
	}
	for i := range 20 {
		waitValue(t, n, "c", fmt.Sprintf("k%d", i), "2")
	}
	doc, rev := appMeta(t, n.ClientURL(), "edgetables")
	if doc.Partitions != 8 || doc.Tables["c"].Kind != manager.KindTable || doc.Tables["c"].Spec["agg"] != "count" {
		t.Fatalf("recorded metadata %+v", doc)
	}
	stop()
	streams, files := snapshot(t, dir)

	for _, parts := range []int{4, 16} {
		cfg := testConfig(t, dir, spec)
		cfg.Partitions = parts
		err := runRefused(t, cfg)
		mustMention(t, err.Error(), fmt.Sprintf("--partitions %d", parts), "created with 8 partitions", "--partitions 8", "--app")
		t.Logf("refused: %v", err)
	}
	streams2, files2 := snapshot(t, dir)
	if fmt.Sprint(streams2) != fmt.Sprint(streams) {
		t.Errorf("streams changed:\n%v\nwere\n%v", streams2, streams)
	}
	if !slices.Equal(files2, files) {
		t.Errorf("files changed:\n%v\nwere\n%v", files2, files)
	}

	cfg = testConfig(t, dir, spec)
	cfg.Partitions = 8
	n, _ = runNode(t, cfg)
	if doc2, rev2 := appMeta(t, n.ClientURL(), "edgetables"); rev2 != rev || doc2.Partitions != 8 {
		t.Errorf("metadata now %+v at revision %d, was revision %d", doc2, rev2, rev)
	}
	_, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/c/keys?limit=100")
	if got := len(body["entries"].([]any)); got != 20 {
		t.Errorf("listed %d keys, want 20", got)
	}
}

// TestTableSpecChangeRefusedThenReset: a table whose aggregation changed
// (sum → avg, sum → max) is refused with a message naming the table, both
// specs and the ways out; with --reset-table it starts empty (its records
// gone from the changelog), the other table keeps its values, and the new
// spec is recorded; later starts need no flag.
func TestTableSpecChangeRefusedThenReset(t *testing.T) {
	dir := t.TempDir()
	count := "name=c,source=s.*,key=subject:2,agg=count"
	sum := "name=t,source=s.*,key=subject:2,agg=sum,field=v"
	n, stop := startNode(t, dir, count, sum)
	for _, v := range []string{"1", "2", "3"} {
		publish(t, n, "s.a", `{"v":`+v+`}`)
	}
	waitValue(t, n, "t", "a", "6")
	waitValue(t, n, "c", "a", "3")
	stop()

	for _, c := range []struct{ spec, change string }{
		{"name=t,source=s.*,key=subject:2,agg=avg,field=v", "agg sum → avg"},
		{"name=t,source=s.*,key=subject:2,agg=max,field=v", "agg sum → max"},
		{"name=t,source=s.*,key=json:id,agg=sum,field=v", "key subject:2 → json:id"},
		{"name=t,source=s.*,key=subject:2,agg=sum,field=v,window=1m", "kind table → windowed"},
	} {
		err := runRefused(t, testConfig(t, dir, count, c.spec))
		mustMention(t, err.Error(), "table t:", "agg=sum", c.change, "--reset-table t", "new name")
	}
	t.Logf("refused: %v", runRefused(t, testConfig(t, dir, count, "name=t,source=s.*,key=subject:2,agg=avg,field=v")))

	avg := "name=t,source=s.*,key=subject:2,agg=avg,field=v"
	cfg := testConfig(t, dir, count, avg)
	cfg.ResetTables = []string{"t"}
	log := logTo(&cfg)
	n, stop = runNode(t, cfg)
	mustMention(t, log.String(), "table reset", "records_dropped=1", "starts empty")
	waitValue(t, n, "c", "a", "3")
	if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/t/keys/a"); code != 404 {
		t.Errorf("t/a after the reset = %d %v, want 404", code, body)
	}
	publish(t, n, "s.a", `{"v":10}`)
	waitValue(t, n, "t", "a", `{"avg":10,"count":1,"sum":10}`)
	waitValue(t, n, "c", "a", "4")
	doc, _ := appMeta(t, n.ClientURL(), "edgetables")
	if tm := doc.Tables["t"]; tm.Spec["agg"] != "avg" || tm.Resets != 1 || tm.Reset == nil || !tm.Reset.Done || tm.Reset.By != "n1" {
		t.Errorf("recorded table t: %+v (reset %+v)", tm, tm.Reset)
	}
	stop()

	// The flag left in place changes nothing; without it, the same.
	cfg = testConfig(t, dir, count, avg)
	cfg.ResetTables = []string{"t"}
	log = logTo(&cfg)
	n, stop = runNode(t, cfg)
	mustMention(t, log.String(), "nothing to reset")
	waitValue(t, n, "t", "a", `{"avg":10,"count":1,"sum":10}`)
	stop()
	n, _ = startNode(t, dir, count, avg)
	waitValue(t, n, "t", "a", `{"avg":10,"count":1,"sum":10}`)
	waitValue(t, n, "c", "a", "4")
}

// TestTablesAddedAndRemoved: a new table is accepted and recorded; a table
// no longer declared stays recorded, marked undeclared; declaring it again
// is refused (it missed events) until it is reset.
func TestTablesAddedAndRemoved(t *testing.T) {
	dir := t.TempDir()
	a := "name=a,source=s.*,key=subject:2,agg=count"
	b := "name=b,source=s.*,key=subject:2,agg=latest"
	n, stop := startNode(t, dir, a)
	publish(t, n, "s.x", `{}`)
	waitValue(t, n, "a", "x", "1")
	before, _ := appMeta(t, n.ClientURL(), "edgetables")
	stop()

	n, stop = startNode(t, dir, a, b)
	publish(t, n, "s.x", `{"n":2}`)
	waitValue(t, n, "b", "x", `{"n":2}`)
	doc, _ := appMeta(t, n.ClientURL(), "edgetables")
	if tb, ok := doc.Tables["b"]; !ok || tb.Spec["agg"] != "latest" || tb.Added.Before(before.Tables["a"].Added) || tb.AddedBy != "n1" {
		t.Errorf("table b recorded as %+v (present %v)", tb, ok)
	}
	stop()

	cfg := testConfig(t, dir, a)
	log := logTo(&cfg)
	n, stop = runNode(t, cfg)
	mustMention(t, log.String(), "not declared by this node", "table=b")
	publish(t, n, "s.x", `{"n":3}`) // b misses it
	waitValue(t, n, "a", "x", "3")
	doc, _ = appMeta(t, n.ClientURL(), "edgetables")
	if tb := doc.Tables["b"]; tb.Undeclared.IsZero() || tb.UndeclaredBy != "n1" {
		t.Errorf("table b recorded as %+v, want undeclared", tb)
	}
	stop()

	err := runRefused(t, testConfig(t, dir, a, b))
	mustMention(t, err.Error(), "table b:", "declared again", "missed the events", "--reset-table b")
	t.Logf("refused: %v", err)

	cfg = testConfig(t, dir, a, b)
	cfg.ResetTables = []string{"b"}
	n, _ = runNode(t, cfg)
	waitValue(t, n, "a", "x", "3")
	if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/b/keys/x"); code != 404 {
		t.Errorf("b/x after the reset = %d %v, want 404", code, body)
	}
	if doc, _ = appMeta(t, n.ClientURL(), "edgetables"); !doc.Tables["b"].Undeclared.IsZero() || doc.Tables["b"].Resets != 1 {
		t.Errorf("table b after the reset: %+v", doc.Tables["b"])
	}
}

// TestConcurrentNodesAgreeOnShape: two nodes of one app on external NATS,
// started at once on an app that does not exist yet, one with 8 partitions
// and one with 4: exactly one creates the metadata and runs, and the other
// reads it and is refused with both counts named.
func TestConcurrentNodesAgreeOnShape(t *testing.T) {
	srv, _, _ := jstest.Start(t)
	type outcome struct {
		node *Node
		err  error
	}
	results := make(chan outcome, 2)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, parts := range []int{8, 4} {
		cfg := testConfig(t, t.TempDir(), "name=c,source=e.*,key=subject:2,agg=count")
		cfg.Name, cfg.Partitions, cfg.NATSURLs, cfg.HTTPListen = fmt.Sprintf("n%d", i), parts, []string{srv.ClientURL()}, "off"
		n, err := NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.Run(ctx)
			select {
			case <-n.Started():
			default:
				results <- outcome{n, err}
				return
			}
			if err != nil {
				t.Errorf("node %s: %v", cfg.Name, err)
			}
		}()
		go func() {
			select {
			case <-n.Started():
				results <- outcome{n, nil}
			case <-ctx.Done():
			}
		}()
	}
	var started *Node
	var refused error
	for range 2 {
		select {
		case r := <-results:
			if r.err != nil {
				refused = r.err
			} else {
				started = r.node
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the nodes neither started nor stopped")
		}
	}
	if started == nil || refused == nil {
		t.Fatalf("started %v, refused %v: want one of each", started, refused)
	}
	if !errors.Is(refused, ErrAppShape) {
		t.Fatalf("refused with %v, want ErrAppShape", refused)
	}
	doc, rev := appMeta(t, srv.ClientURL(), "edgetables")
	if rev != 1 || doc.Partitions != started.Manager().Partitions() || doc.CreatedBy != started.cfg.Name {
		t.Errorf("metadata %+v at revision %d; started node %s with %d partitions", doc, rev, started.cfg.Name, started.Manager().Partitions())
	}
	mustMention(t, refused.Error(), fmt.Sprintf("--partitions %d", 12-doc.Partitions), fmt.Sprintf("created with %d partitions", doc.Partitions))
	t.Logf("%s created the app; the other: %v", doc.CreatedBy, refused)
}

// TestClusterRecordsShapeOnce: three nodes of an embedded cluster start at
// once on a new app: one records the metadata, the others read it (one
// write in all), and each runs.
func TestClusterRecordsShapeOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	c := newTestCluster(t, 3, "name=c,source=e.*,key=subject:2,agg=count")
	doc, rev := appMeta(t, c.nodes[0].ClientURL(), "edgetables")
	if rev != 1 || doc.Partitions != 6 || len(doc.Tables) != 1 || !slices.Contains([]string{"n0", "n1", "n2"}, doc.CreatedBy) {
		t.Errorf("metadata %+v at revision %d, want one write by a node", doc, rev)
	}
}

// TestClusterResetTable: in a cluster, a node started with --reset-table
// while the others run is refused (they write the table); once every node
// is stopped and all start again with the new spec and the flag, one of
// them resets the table while the others wait, and every node serves the
// other table whole and the reset one empty, then folding new events.
func TestClusterResetTable(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	count := "name=c,source=ev.*,key=subject:2,agg=count"
	sum := "name=t,source=ev.*,key=subject:2,agg=sum,field=v"
	avg := "name=t,source=ev.*,key=subject:2,agg=avg,field=v"
	c := newTestCluster(t, 3, count, sum)
	want := map[string]int{}
	for i := range 60 {
		want[fmt.Sprintf("k%d", i%6)]++
	}
	c.publish(want, func(k string) string { return "ev." + k })
	c.expect("c", want)
	c.expect("t", want)

	c.stop(2)
	cfg := Config{Name: "n2", DataDir: filepath.Join(c.dir, "2"), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Partitions: 6, ClusterName: "test", ClusterListen: c.listen[2], Routes: c.routes, SessionTimeout: 2 * time.Second,
		Logger: c.logger(2), ResetTables: []string{"t"}}
	for _, s := range []string{count, avg} {
		spec, err := builtin.ParseTableSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		table, agent, _ := builtin.Builtin(spec)
		cfg.Tables, cfg.Agents = append(cfg.Tables, table), append(cfg.Agents, agent)
	}
	err := runRefused(t, cfg)
	mustMention(t, err.Error(), "--reset-table t", "n0", "n1", "are running", "stop every node")
	t.Logf("refused: %v", err)

	var wg sync.WaitGroup
	for _, i := range []int{0, 1} {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(i) }()
	}
	wg.Wait()
	c.specs = []string{count, avg}
	c.configure = func(_ int, cfg *Config) { cfg.ResetTables = []string{"t"} }
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	c.waitAssigned()
	c.expect("c", want)
	doc, _ := appMeta(t, c.nodes[0].ClientURL(), "edgetables")
	tm := doc.Tables["t"]
	if tm.Spec["agg"] != "avg" || tm.Resets != 1 || tm.Reset == nil || !tm.Reset.Done || tm.Reset.Purged != 6 {
		t.Errorf("recorded table t: %+v (reset %+v)", tm, tm.Reset)
	}
	for _, n := range c.live() {
		if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/t/keys/k0"); code != 404 {
			t.Errorf("%s: t/k0 after the reset = %d %v, want 404", n.cfg.Name, code, body)
		}
	}
	c.publish(map[string]int{"k0": 2}, func(k string) string { return "ev." + k })
	for _, n := range c.live() {
		waitValue(t, n, "t", "k0", `{"avg":1,"count":2,"sum":2}`)
	}
	want["k0"] += 2
	c.expect("c", want)
}

// TestGlobalTableReset: a global table declared in Go whose value codec
// changed is refused; reset, its records leave the global stream and every
// copy, and the partitioned table beside it keeps its values.
func TestGlobalTableReset(t *testing.T) {
	dir := t.TempDir()
	count := "name=c,source=e.*,key=subject:2,agg=count"
	cfg := testConfig(t, dir, count)
	g1 := manager.NewGlobalTable(manager.TableConfig[string, int64]{Name: "g", Keys: codec.String{}, Values: codec.Int64{}})
	cfg.Tables = append(cfg.Tables, g1)
	n, stop := runNode(t, cfg)
	if err := g1.Set(context.Background(), "k", 7); err != nil {
		t.Fatal(err)
	}
	publish(t, n, "e.a", "{}")
	waitValue(t, n, "c", "a", "1")
	stop()

	newConfig := func() (Config, *manager.GlobalTable[string, float64]) {
		cfg := testConfig(t, dir, count)
		g := manager.NewGlobalTable(manager.TableConfig[string, float64]{Name: "g", Keys: codec.String{},
			Values: codec.JSON[float64]{}})
		cfg.Tables = append(cfg.Tables, g)
		return cfg, g
	}
	cfg, _ = newConfig()
	err := runRefused(t, cfg)
	mustMention(t, err.Error(), "table g:", "kind=global", "value codec manager.Int64Codec → manager.JSONCodec[float64]", "--reset-table g")

	cfg, g2 := newConfig()
	cfg.ResetTables = []string{"g"}
	n, _ = runNode(t, cfg)
	if _, found, err := g2.Find("k"); err != nil || found {
		t.Errorf("g/k after the reset: found %v, %v", found, err)
	}
	waitValue(t, n, "c", "a", "1")
	if err := g2.Set(context.Background(), "k", 1.5); err != nil {
		t.Fatal(err)
	}
	if v, err := g2.Get("k"); err != nil || v != 1.5 {
		t.Errorf("g/k = %v, %v; want 1.5", v, err)
	}
}

// TestAppWithoutMetadata: an app created before edgetables recorded its
// metadata (its streams exist, its bucket does not) refuses another
// partition count than its changelog streams have, and records its
// metadata from the flags of the first node that fits.
func TestAppWithoutMetadata(t *testing.T) {
	dir := t.TempDir()
	spec := "name=c,source=e.*,key=subject:2,agg=count"
	cfg := testConfig(t, dir, spec)
	cfg.Partitions = 8
	n, stop := runNode(t, cfg)
	publish(t, n, "e.a", "{}")
	waitValue(t, n, "c", "a", "1")
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := natsjs.New(nc)
	if err := js.DeleteKeyValue(context.Background(), jetstream.MetaBucket("edgetables")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	stop()

	cfg = testConfig(t, dir, spec)
	err = runRefused(t, cfg)
	mustMention(t, err.Error(), "--partitions 4", "8 partitions", "edgetables_changelog_0 to edgetables_changelog_7")

	cfg = testConfig(t, dir, spec)
	cfg.Partitions = 8
	log := logTo(&cfg)
	n, _ = runNode(t, cfg)
	mustMention(t, log.String(), "created before edgetables kept it")
	waitValue(t, n, "c", "a", "1")
	if doc, _ := appMeta(t, n.ClientURL(), "edgetables"); doc.Partitions != 8 || doc.Tables["c"].Spec["agg"] != "count" {
		t.Errorf("recorded %+v", doc)
	}
}

// TestAnotherAppInTheSameDataDir: a node started for a new app (--app) in
// the data directory of another does not take that app's table stores for
// its own (they would be behind its empty changelogs, or with
// --changelog-behind reseed give it the old app's values): it removes them
// and starts empty; the old app, started again, rebuilds its stores from
// its changelog with every value.
func TestAnotherAppInTheSameDataDir(t *testing.T) {
	dir := t.TempDir()
	old := "name=c,source=s.*,key=subject:2,agg=count"
	n, stop := startNode(t, dir, old)
	for range 3 {
		publish(t, n, "s.a", `{}`)
	}
	publish(t, n, "s.b", `{}`)
	waitValue(t, n, "c", "a", "3")
	waitValue(t, n, "c", "b", "1")
	stop()

	cfg := testConfig(t, dir, "name=c,source=r.*,key=subject:2,agg=count")
	cfg.App = "app2"
	log := logTo(&cfg)
	n, stop = runNode(t, cfg)
	mustMention(t, log.String(), "written by app edgetables")
	publish(t, n, "r.a", `{}`)
	waitValue(t, n, "c", "a", "1")
	if code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/tables/c/keys/b"); code != 404 {
		t.Errorf("app2's c/b = %d %v, want 404 (only the old app counted b)", code, body)
	}
	stop()

	n, _ = startNode(t, dir, old)
	waitValue(t, n, "c", "a", "3")
	waitValue(t, n, "c", "b", "1")
}

// TestFirstStartRefusedForItsSubjects: a new app whose source subjects
// another stream captures is refused before it records its shape or
// creates a stream, so a second start with the subjects corrected, and
// its table changed too, is not refused for a shape that never ran.
// (Before, the first start recorded the table with its first source, and
// the corrected one was refused as a changed spec.)
func TestFirstStartRefusedForItsSubjects(t *testing.T) {
	dir := t.TempDir()
	_, stop := startNode(t, dir, "name=c,source=s.*,key=subject:2,agg=count")
	stop()

	cfg := testConfig(t, dir, "name=c,source=s.>,key=subject:2,agg=count")
	cfg.App = "app2"
	err := runFailing(t, cfg, jetstream.ErrSubjectOverlap)
	mustMention(t, err.Error(), `"s.>" overlaps "s.*" of stream edgetables_source`)
	streams, _ := snapshot(t, dir)
	for name := range streams {
		if strings.HasPrefix(name, "app2") || strings.HasPrefix(name, "KV_app2") {
			t.Errorf("the refused start created stream %s", name)
		}
	}

	cfg = testConfig(t, dir, "name=c,source=r.*,key=subject:2,agg=sum,field=v")
	cfg.App = "app2"
	n, _ := runNode(t, cfg)
	publish(t, n, "r.a", `{"v":2}`)
	publish(t, n, "r.a", `{"v":3}`)
	waitValue(t, n, "c", "a", "5")
	doc, _ := appMeta(t, n.ClientURL(), "app2")
	if got := doc.Tables["c"].Spec["source"]; got != "r.*" {
		t.Errorf("recorded source %q, want r.*", got)
	}
}
