package jetstream_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// updateGolden rewrites the version 1 golden files of the current
// encoding: go test -run 'Golden' ./jetstream/ -update. Review the diff:
// a changed golden file is a changed wire format.
var updateGolden = flag.Bool("update", false, "rewrite the v1 golden files in testdata")

// readGolden returns testdata/name without its final line break, or
// writes b there first when -update is set.
func readGolden(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	path := "testdata/" + name
	if *updateGolden && b != nil {
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(g, []byte("\n"))
}

var goldenStarted = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// TestWireGolden: each JSON document of version 1 in testdata decodes to
// its value, and encoding the value gives the file byte for byte (so a
// change of the wire format fails here); the same document as the release
// before versions wrote it (-v0, no "v") decodes to the same value; a
// document of a later version is refused with ErrWireVersion.
func TestWireGolden(t *testing.T) {
	marker := port.CommitMarker{SourceSeq: 1234, Node: "n1", Generation: 7, SourceEpoch: "2026-12-01T09:00:00.123456789Z"}
	// The release before versions wrote no source epoch.
	marker0 := port.CommitMarker{SourceSeq: 1234, Node: "n1", Generation: 7}
	member := status.MemberState{Node: "n2", Generation: 7, Actives: []int{0, 3}, Standbys: []int{1},
		Positions: map[int]uint64{0: 1200, 3: 877}, HTTP: "10.0.0.2:8080", Instance: "4f2a9c01d3e5b7a9", Started: goldenStarted}
	assignment := assign.Assignment{Generation: 7, Partitions: 4, Actives: []string{"n1", "n2", "n3", "n1"},
		Standbys: [][]string{{"n2"}, {"n3"}, {"n1"}, {"n2"}}}
	cases := []struct {
		name   string
		want   any
		want0  any // from the -v0 file; nil: want
		encode func() ([]byte, error)
		decode func([]byte) (any, error)
	}{
		{"commit-marker", marker, marker0,
			func() ([]byte, error) { return jetstream.EncodeCommitMarker(marker) },
			func(b []byte) (any, error) { return jetstream.DecodeCommitMarker(b) }},
		{"member-state", member, nil,
			func() ([]byte, error) { return jetstream.EncodeMemberState(member) },
			func(b []byte) (any, error) { return jetstream.DecodeMemberState(b) }},
		{"assignment", assignment, nil,
			func() ([]byte, error) { return jetstream.EncodeAssignment(assignment) },
			func(b []byte) (any, error) { return jetstream.DecodeAssignment(b) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc, err := c.encode()
			if err != nil {
				t.Fatal(err)
			}
			golden := readGolden(t, c.name+"-v1.json", enc)
			if !bytes.Equal(enc, golden) {
				t.Errorf("encoded\n%s\nwant the golden file\n%s", enc, golden)
			}
			want0 := c.want0
			if want0 == nil {
				want0 = c.want
			}
			for file, want := range map[string]any{c.name + "-v1.json": c.want, c.name + "-v0.json": want0} {
				got, err := c.decode(readGolden(t, file, nil))
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s decoded to\n%+v\nwant\n%+v", file, got, want)
				}
			}
			later := bytes.Replace(golden, []byte(`"v":1`), []byte(`"v":2`), 1)
			if _, err := c.decode(later); !errors.Is(err, jetstream.ErrWireVersion) {
				t.Errorf("version 2 decoded with err %v, want ErrWireVersion", err)
			}
		})
	}
}

// goldenMsg is a message as stored in a stream, as written in a golden
// file: its subject, the headers edgetables reads, and its data as text.
type goldenMsg struct {
	Subject string              `json:"subject"`
	Header  map[string][]string `json:"header,omitempty"`
	Data    string              `json:"data"`
}

// storedMsgs reads messages first..last of stream with their headers but
// the Nats-* ones that steered the publish (batch and expectations; it
// keeps Nats-TTL and Nats-Msg-Id).
func storedMsgs(t *testing.T, js natsjs.JetStream, stream string, first, last uint64) []goldenMsg {
	t.Helper()
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenMsg
	for seq := first; seq <= last; seq++ {
		m, err := st.GetMsg(testCtx(t), seq)
		if err != nil {
			t.Fatalf("stream %s sequence %d: %v", stream, seq, err)
		}
		g := goldenMsg{Subject: m.Subject, Data: string(m.Data)}
		for k, vs := range m.Header {
			if !strings.HasPrefix(k, "Nats-") || k == natsjs.MsgTTLHeader || k == natsjs.MsgIDHeader {
				if g.Header == nil {
					g.Header = map[string][]string{}
				}
				g.Header[k] = vs
			}
		}
		out = append(out, g)
	}
	return out
}

// checkGoldenMsgs compares msgs to testdata/name (JSON, indented) and
// returns the golden messages.
func checkGoldenMsgs(t *testing.T, name string, msgs []goldenMsg) []goldenMsg {
	t.Helper()
	enc, err := json.MarshalIndent(msgs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := readGolden(t, name, enc)
	if !bytes.Equal(enc, golden) {
		t.Errorf("stored messages\n%s\nwant the golden file %s\n%s", enc, name, golden)
	}
	var out []goldenMsg
	if err := json.Unmarshal(golden, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// publishGolden publishes msgs as they are, with their headers.
func publishGolden(t *testing.T, js natsjs.JetStream, msgs []goldenMsg) {
	t.Helper()
	for _, g := range msgs {
		m := &nats.Msg{Subject: g.Subject, Header: nats.Header(g.Header), Data: []byte(g.Data)}
		if _, err := js.PublishMsg(testCtx(t), m); err != nil {
			t.Fatalf("publish %s: %v", g.Subject, err)
		}
	}
}

// TestRecordGolden: a commit's records (a value, a tombstone, a value with
// a TTL) and its marker are stored as testdata/changelog-v1.json says, and
// the golden messages, published into an empty changelog, replay to the
// same records and marker; a record of a later version is refused.
func TestRecordGolden(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	recs := []port.Record{
		{Table: "counts", Key: []byte("sensor-1"), Value: []byte("42")},
		{Table: "counts", Key: []byte("sensor-2"), Delete: true},
		{Table: "per-min", Key: []byte("\x00\x01k"), Value: []byte(`{"count":3}`), TTL: 90 * time.Second},
	}
	marker := port.CommitMarker{SourceSeq: 77, Node: "n1", Generation: 3}
	cl := newChangelog(t, js, 1)
	last := mustAppend(t, cl, 0, 0, recs, marker)
	golden := checkGoldenMsgs(t, "changelog-v1.json", storedMsgs(t, js, jetstream.ChangelogStream(app, 0), 1, last))

	if err := js.DeleteStream(ctx, jetstream.ChangelogStream(app, 0)); err != nil {
		t.Fatal(err)
	}
	cl = newChangelog(t, js, 1)
	publishGolden(t, js, golden)
	got := replayAll(t, cl, 0, 1, uint64(len(golden)), 10)
	if len(got) != len(recs)+1 {
		t.Fatalf("replayed %d entries, want %d", len(got), len(recs)+1)
	}
	for i, r := range recs {
		r.TTL = 0 // not read back
		if got[i].Commit != nil || !reflect.DeepEqual(got[i].Record, r) {
			t.Errorf("entry %d: %+v, want record %+v", i, got[i], r)
		}
	}
	if c := got[len(recs)].Commit; c == nil || *c != marker {
		t.Errorf("last entry %+v, want marker %+v", got[len(recs)], marker)
	}

	later := golden[0]
	later.Header = map[string][]string{jetstream.HeaderVersion: {"2"}}
	publishGolden(t, js, []goldenMsg{later})
	err := cl.Replay(ctx, 0, uint64(len(golden))+1, uint64(len(golden))+1, 10, func([]port.Entry) error { return nil })
	if !errors.Is(err, jetstream.ErrWireVersion) {
		t.Errorf("replay of a version 2 record: %v, want ErrWireVersion", err)
	}
}

// TestGlobalRecordGolden: global-table records (a value, a tombstone) are
// stored as testdata/global-v1.json says and read back from the golden
// messages.
func TestGlobalRecordGolden(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	newGlobal := func() *jetstream.GlobalLog {
		g, err := jetstream.NewGlobalLog(ctx, js, jetstream.GlobalConfig{App: app})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := newGlobal()
	recs := []port.Record{
		{Table: "sites", Key: []byte("site-7"), Value: []byte(`{"name":"north"}`)},
		{Table: "sites", Key: []byte("site-9"), Delete: true},
	}
	for _, r := range recs {
		if _, err := g.Put(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	golden := checkGoldenMsgs(t, "global-v1.json", storedMsgs(t, js, jetstream.GlobalStream(app), 1, 2))
	if err := js.DeleteStream(ctx, jetstream.GlobalStream(app)); err != nil {
		t.Fatal(err)
	}
	g = newGlobal()
	publishGolden(t, js, golden)
	var got []port.Entry
	if err := g.Replay(ctx, 1, 2, 10, func(es []port.Entry) error { got = append(got, es...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0].Record, recs[0]) || !reflect.DeepEqual(got[1].Record, recs[1]) {
		t.Errorf("replayed %+v, want %+v", got, recs)
	}
}

// TestDeadLetterGolden: a dead letter is stored as testdata/deadletter-v1.json
// says; DecodeDeadLetter reads the golden message and one without a
// version header (as the release before versions wrote it) to the same
// dead letter, and refuses a later version.
func TestDeadLetterGolden(t *testing.T) {
	_, _, js := jstest.Start(t)
	ctx := testCtx(t)
	d, err := jetstream.NewDeadLetters(ctx, js, app, 1)
	if err != nil {
		t.Fatal(err)
	}
	dl := port.DeadLetter{Agent: "counts", Reason: "decode value: invalid character 'x'",
		Message: port.SourceMessage{Seq: 4711, Subject: "sensors.s1.temp",
			Header: map[string][]string{"Trace": {"abc"}, "Nats-Msg-Id": {"orig-1"}}, Data: []byte("x1")}}
	if err := d.Send(ctx, dl); err != nil {
		t.Fatal(err)
	}
	golden := checkGoldenMsgs(t, "deadletter-v1.json", storedMsgs(t, js, jetstream.DeadLetterStream(app), 1, 1))
	v1 := &nats.Msg{Subject: golden[0].Subject, Header: nats.Header(golden[0].Header), Data: []byte(golden[0].Data)}
	v0 := &nats.Msg{Subject: v1.Subject, Header: nats.Header{}, Data: v1.Data}
	for k, vs := range v1.Header {
		if k != jetstream.HeaderVersion {
			v0.Header[k] = vs
		}
	}
	for name, m := range map[string]*nats.Msg{"v1": v1, "v0": v0} {
		got, err := jetstream.DecodeDeadLetter(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, dl) {
			t.Errorf("%s decoded to %+v, want %+v", name, got, dl)
		}
	}
	v1.Header.Set(jetstream.HeaderVersion, "2")
	if _, err := jetstream.DecodeDeadLetter(v1); !errors.Is(err, jetstream.ErrWireVersion) {
		t.Errorf("version 2: %v, want ErrWireVersion", err)
	}
}
