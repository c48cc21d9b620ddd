package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
	"github.com/edgetables/edgetables/manager/window"
)

// goldenMeta is the document of testdata/appmeta-v1.json.
func goldenMeta() jetstream.AppMeta {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	return jetstream.AppMeta{
		Version: 1, App: "edgetables", Partitions: 8, Created: at("2026-12-01T10:00:00Z"), CreatedBy: "n1",
		Tables: map[string]jetstream.TableMeta{
			"per-min": {Kind: manager.KindWindowed,
				Spec: map[string]string{"agg": "avg", "expires": "5m0s", "field": "value", "key": "subject:2",
					"source": "sensors.*.temp", "time": "json:ts", "window": "1m0s"},
				KeyCodec: "manager.StringCodec", ValueCodec: "manager.JSONCodec[github.com/edgetables/edgetables/edge.Average]",
				Added: at("2026-12-01T10:00:00Z"), AddedBy: "n1"},
			"sites": {Kind: manager.KindGlobal, Spec: map[string]string{"kind": "global", "values": "json"},
				KeyCodec: "manager.StringCodec", ValueCodec: "manager.RawJSONCodec",
				Added: at("2026-12-02T08:30:00Z"), AddedBy: "n2"},
			"temps": {Kind: manager.KindTable,
				Spec:     map[string]string{"agg": "max", "field": "value", "key": "subject:2", "source": "sensors.*.temp"},
				KeyCodec: "manager.StringCodec", ValueCodec: "manager.JSONCodec[float64]",
				Added: at("2026-12-03T09:00:00Z"), AddedBy: "n1", Resets: 1,
				Reset: &jetstream.TableReset{At: at("2026-12-03T09:00:00Z"), By: "n1", Done: true, Purged: 120}},
			"users": {Kind: manager.KindSet,
				Spec:     map[string]string{"agg": "set", "field": "user", "key": "subject:2", "source": "sensors.*.temp"},
				KeyCodec: "manager.StringCodec", ValueCodec: "manager.RawJSONCodec",
				Added: at("2026-12-01T10:00:00Z"), AddedBy: "n1", Undeclared: at("2026-12-04T12:00:00Z"), UndeclaredBy: "n3"},
		},
	}
}

// TestAppMetaGolden: the version 1 document in testdata decodes to the
// fields it was written with, and encoding them gives the file again, byte
// for byte: a change of the format shows here, and needs a new version
// whose reader still reads this file.
func TestAppMetaGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/appmeta-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := jetstream.DecodeAppMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	want := goldenMeta()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
	}
	enc, err := jetstream.EncodeAppMeta(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(enc, '\n'), b) {
		t.Errorf("encoded\n%s\nwant the golden file\n%s", enc, b)
	}
}

func TestDecodeAppMetaRefuses(t *testing.T) {
	cases := []struct {
		name, doc string
		want      error
	}{
		{"later version", `{"version": 2, "app": "a", "partitions": 8}`, jetstream.ErrMetaVersion},
		{"no version", `{"app": "a", "partitions": 8}`, jetstream.ErrBadMeta},
		{"no partitions", `{"version": 1, "app": "a"}`, jetstream.ErrBadMeta},
		{"not JSON", `version 1`, jetstream.ErrBadMeta},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := jetstream.DecodeAppMeta([]byte(c.doc)); !errors.Is(err, c.want) {
				t.Errorf("DecodeAppMeta(%s) = %v, want %v", c.doc, err, c.want)
			}
		})
	}
	doc, err := jetstream.DecodeAppMeta([]byte(`{"version": 1, "app": "a", "partitions": 3}`))
	if err != nil || doc.Tables == nil || doc.Partitions != 3 {
		t.Errorf("a document without tables: %+v, %v", doc, err)
	}
}

// TestNewTableMeta: a table's recorded shape has its kind and codecs, and
// a windowed table's windows with their defaults filled in.
func TestNewTableMeta(t *testing.T) {
	win := manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{Name: "w", Keys: codec.String{},
		Values: codec.Int64{}, Windows: window.Hopping(time.Minute, 20*time.Second, 0),
		Time: window.TimeSource{Kind: window.TimeField, Name: "ts"}, Spec: map[string]string{"note": "x"}})
	cases := []struct {
		table manager.Collection
		want  jetstream.TableMeta
	}{
		{manager.NewTable(manager.TableConfig[string, float64]{Name: "t", Keys: codec.String{}, Values: codec.JSON[float64]{},
			Spec: map[string]string{"agg": "sum"}}),
			jetstream.TableMeta{Kind: manager.KindTable, Spec: map[string]string{"agg": "sum"}, KeyCodec: "manager.StringCodec",
				ValueCodec: "manager.JSONCodec[float64]"}},
		{win, jetstream.TableMeta{Kind: manager.KindWindowed, KeyCodec: "manager.StringCodec", ValueCodec: "manager.Int64Codec",
			Spec: map[string]string{"note": "x", "window": "1m0s", "hop": "20s", "expires": "1m0s", "time": "json:ts"}}},
		{manager.NewSetTable(manager.SetTableConfig[string, string]{Name: "s", Keys: codec.String{}, Members: codec.RawJSON{}}),
			jetstream.TableMeta{Kind: manager.KindSet, KeyCodec: "manager.StringCodec", ValueCodec: "manager.RawJSONCodec"}},
		{manager.NewGlobalTable(manager.TableConfig[int64, string]{Name: "g", Keys: codec.Int64{}, Values: codec.RawJSON{}}),
			jetstream.TableMeta{Kind: manager.KindGlobal, KeyCodec: "manager.Int64Codec", ValueCodec: "manager.RawJSONCodec"}},
	}
	for _, c := range cases {
		if got := jetstream.NewTableMeta(c.table); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.table.Name(), got, c.want)
		}
	}
}

// TestMetaCreateOnce: nodes creating an app's metadata at once agree on
// one document: exactly one creates it, the others get that one (same
// content, same revision). Updates are compare-and-set.
func TestMetaCreateOnce(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := jetstream.NewMeta(js, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Load(ctx); !errors.Is(err, jetstream.ErrNoMeta) {
		t.Fatalf("Load of a new app = %v, want ErrNoMeta", err)
	}
	const n = 8
	type result struct {
		doc     jetstream.AppMeta
		rev     uint64
		created bool
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := jetstream.AppMeta{App: "app", Partitions: 4 + i, CreatedBy: fmt.Sprintf("n%d", i),
				Created: time.Now().UTC().Truncate(time.Second)}
			var r result
			r.doc, r.rev, r.created, r.err = m.Create(ctx, doc, 1)
			results[i] = r
		}()
	}
	wg.Wait()
	created := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("node %d: %v", i, r.err)
		}
		if r.created {
			created++
		}
		if r.rev != results[0].rev || r.doc.CreatedBy != results[0].doc.CreatedBy || r.doc.Partitions != results[0].doc.Partitions {
			t.Errorf("node %d got %+v at %d, node 0 %+v at %d", i, r.doc, r.rev, results[0].doc, results[0].rev)
		}
	}
	if created != 1 {
		t.Fatalf("%d nodes created the document, want 1", created)
	}
	doc, rev, err := m.Load(ctx)
	if err != nil || doc.CreatedBy != results[0].doc.CreatedBy || rev != results[0].rev || doc.Version != jetstream.MetaVersion {
		t.Fatalf("Load = %+v at %d, %v", doc, rev, err)
	}

	doc.Tables["t"] = jetstream.TableMeta{Kind: manager.KindTable}
	rev2, err := m.Update(ctx, doc, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ctx, doc, rev); !errors.Is(err, jetstream.ErrMetaConflict) {
		t.Fatalf("Update at a stale revision = %v, want ErrMetaConflict", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	got, gotRev, err := m.WaitChange(wctx, rev)
	if err != nil || gotRev != rev2 || got.Tables["t"].Kind != manager.KindTable {
		t.Fatalf("WaitChange(%d) = %+v at %d, %v; want revision %d", rev, got, gotRev, err, rev2)
	}
	// A watch started before the next update returns it, whichever of the
	// two reaches the server first.
	waited := make(chan jetstream.AppMeta, 1)
	go func() {
		got, _, err := m.WaitChange(wctx, rev2)
		if err != nil {
			t.Errorf("WaitChange(%d): %v", rev2, err)
		}
		waited <- got
	}()
	doc.Partitions = 99
	if _, err := m.Update(ctx, doc, rev2); err != nil {
		t.Fatal(err)
	}
	if got := <-waited; got.Partitions != 99 {
		t.Fatalf("WaitChange(%d) = %+v; want the next update", rev2, got)
	}
}

// TestPurgeTable: a table's records leave every partition's changelog;
// the other tables' records (of a table whose name starts alike too) and
// the commit markers stay, and the last sequences do not move. A log whose
// last message was the table's gets its last commit marker again, so that
// a replay still reaches the log's end; a log left empty gets nothing.
func TestPurgeTable(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type layout struct {
		name      string
		tables    []string // records of k0..k3 of each, then a marker unless noMarker
		noMarker  bool
		tail      string // a record of this table after the marker
		wantMsgs  uint64
		wantLast  uint64
		wantLeft  map[string]int // subjects left per table ("commit": markers)
		wantEndIs string         // the subject of the last message, if any
	}
	layouts := []layout{
		{name: "records then marker", tables: []string{"a", "ab", "b"}, wantMsgs: 9, wantLast: 13,
			wantLeft: map[string]int{"ab": 4, "b": 4, "commit": 1}, wantEndIs: "app.commit.0"},
		{name: "a record of the table last", tables: []string{"a", "b"}, tail: "a", wantMsgs: 5, wantLast: 11, // the marker again replaces the first
			wantLeft: map[string]int{"b": 4, "commit": 1}, wantEndIs: "app.commit.1"},
		{name: "only the table", tables: []string{"a"}, noMarker: true, wantMsgs: 0, wantLast: 4},
	}
	cl, err := jetstream.NewChangelog(ctx, js, jetstream.ChangelogConfig{App: "app", Partitions: len(layouts)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := func(subject, data string) {
		t.Helper()
		if _, err := js.Publish(ctx, subject, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for p, l := range layouts {
		for i := range 4 {
			for _, table := range l.tables {
				pub(jetstream.RecordSubject("app", p, table, fmt.Appendf(nil, "k%d", i)), "1")
			}
		}
		if !l.noMarker {
			pub(jetstream.CommitSubject("app", p), fmt.Sprintf(`{"source_seq":%d}`, 100+p))
		}
		if l.tail != "" {
			pub(jetstream.RecordSubject("app", p, l.tail, []byte("k9")), "1")
		}
	}
	if n, err := jetstream.ChangelogPartitions(ctx, js, "app"); err != nil || n != len(layouts) {
		t.Fatalf("ChangelogPartitions = %d, %v; want %d", n, err, len(layouts))
	}
	if n, err := jetstream.ChangelogPartitions(ctx, js, "ap"); err != nil || n != 0 {
		t.Fatalf("ChangelogPartitions of another app = %d, %v; want 0", n, err)
	}
	purged, err := jetstream.PurgeTable(ctx, js, "app", len(layouts)+1, "a") // a partition more: skipped
	if err != nil {
		t.Fatal(err)
	}
	if purged != 4+5+4 {
		t.Errorf("purged %d messages, want 13", purged)
	}
	for p, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			st, err := js.Stream(ctx, jetstream.ChangelogStream("app", p))
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx, natsjs.WithSubjectFilter(">"))
			if err != nil {
				t.Fatal(err)
			}
			if info.State.LastSeq != l.wantLast || info.State.Msgs != l.wantMsgs {
				t.Errorf("last sequence %d, %d messages; want %d and %d", info.State.LastSeq, info.State.Msgs, l.wantLast, l.wantMsgs)
			}
			left := map[string]int{}
			for subj, n := range info.State.Subjects {
				toks := strings.Split(subj, ".")
				left[toks[len(toks)-2]] += int(n) // the table, or "commit" for app.commit.<p>
			}
			if len(left) != len(l.wantLeft) || (len(left) > 0 && !reflect.DeepEqual(left, l.wantLeft)) {
				t.Errorf("holds %v, want %v", left, l.wantLeft)
			}
			if l.wantEndIs == "" {
				return
			}
			m, err := st.GetMsg(ctx, info.State.LastSeq)
			if err != nil || m.Subject != l.wantEndIs || string(m.Data) != fmt.Sprintf(`{"source_seq":%d}`, 100+p) {
				t.Fatalf("last message %+v, %v; want the marker again", m, err)
			}
			var got uint64
			if err := cl.Replay(ctx, p, 1, info.State.LastSeq, 100, func(es []port.Entry) error {
				got = es[len(es)-1].Seq
				return nil
			}); err != nil || got != info.State.LastSeq {
				t.Errorf("replay reached %d (%v), want %d", got, err, info.State.LastSeq)
			}
		})
	}
}

// TestPurgeGlobalTable: a global table's records leave the global stream,
// the other tables' stay; a stream whose last message was the table's ends
// with a tombstone of its empty key.
func TestPurgeGlobalTable(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := jetstream.PurgeGlobalTable(ctx, js, "app", "g"); err != nil || n != 0 {
		t.Fatalf("purge without a global stream = %d, %v", n, err)
	}
	gl, err := jetstream.NewGlobalLog(ctx, js, jetstream.GlobalConfig{App: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for i, table := range []string{"h", "g", "h", "g"} {
		if _, err := gl.Put(ctx, port.Record{Table: table, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("1")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := jetstream.PurgeGlobalTable(ctx, js, "app", "g"); err != nil || n != 2 {
		t.Fatalf("PurgeGlobalTable = %d, %v; want 2", n, err)
	}
	st, err := js.Stream(ctx, jetstream.GlobalStream("app"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 3 || info.State.LastSeq != 5 {
		t.Fatalf("global stream %+v, %v; want 3 messages, the last at 5", info.State, err)
	}
	m, err := st.GetMsg(ctx, 5)
	if err != nil || m.Subject != jetstream.GlobalSubject("app", "g", nil) || m.Header.Get(jetstream.HeaderOp) != jetstream.OpDelete {
		t.Fatalf("last message %+v, %v; want a tombstone of g's empty key", m, err)
	}
}

// TestLiveMembers: members with a lease are listed with its revision and
// TTL, and a renewal moves the revision; one that left is not listed; an
// app without a group has none.
func TestLiveMembers(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if live, err := jetstream.LiveMembers(ctx, js, "app"); err != nil || len(live) != 0 {
		t.Fatalf("LiveMembers without a group = %v, %v", live, err)
	}
	var groups []*jetstream.Group
	for _, node := range []string{"n2", "n1"} {
		g, err := jetstream.NewGroup(ctx, js, jetstream.GroupConfig{App: "app", Node: node, SessionTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Heartbeat(ctx, status.MemberState{}); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	names := func(ls []jetstream.Lease) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Node)
		}
		return out
	}
	live, err := jetstream.LiveMembers(ctx, js, "app")
	if err != nil || !reflect.DeepEqual(names(live), []string{"n1", "n2"}) {
		t.Fatalf("LiveMembers = %v, %v; want [n1 n2]", live, err)
	}
	for _, l := range live {
		if l.TTL != 3*time.Second || l.Revision == 0 {
			t.Errorf("lease %+v, want a revision and a TTL of 3s", l)
		}
	}
	if err := groups[1].Heartbeat(ctx, status.MemberState{}); err != nil {
		t.Fatal(err)
	}
	renewed, err := jetstream.LiveMembers(ctx, js, "app")
	if err != nil || len(renewed) != 2 || renewed[0].Revision <= live[0].Revision || renewed[1].Revision != live[1].Revision {
		t.Fatalf("after n1 renewed: %+v, %v; before %+v; want n1's revision moved and n2's not", renewed, err, live)
	}
	if err := groups[0].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if live, err := jetstream.LiveMembers(ctx, js, "app"); err != nil || !reflect.DeepEqual(names(live), []string{"n1"}) {
		t.Fatalf("LiveMembers after n2 left = %v, %v; want [n1]", live, err)
	}
}
