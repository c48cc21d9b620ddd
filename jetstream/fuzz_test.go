package jetstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// FuzzDecodeEntry decodes any message of a changelog (subject, operation
// header, data): it never panics; an error wraps one of the package's
// sentinels; a record's subject is the one its table and key encode to;
// a commit marker re-encodes to a document that decodes to the same marker.
func FuzzDecodeEntry(f *testing.F) {
	const app, p = "app", 3
	prefix, commits := recordPrefix(app, p), CommitSubject(app, p)
	marker, _ := json.Marshal(port.CommitMarker{SourceSeq: 7, Node: "n1", Generation: 2})
	f.Add(prefix+"count."+EncodeKey([]byte("k1")), "", []byte("1"))
	f.Add(prefix+"count."+EncodeKey(nil), OpDelete, []byte{})
	f.Add(prefix+"a.b.c", "", []byte("x"))
	f.Add(prefix+".x", "", []byte("x"))
	f.Add(commits, "", marker)
	f.Add(commits, "", []byte(`{"source_seq":-1}`))
	f.Add("other.subject", "", []byte("x"))
	f.Fuzz(func(t *testing.T, subj, op string, data []byte) {
		h := nats.Header{}
		if op != "" {
			h.Set(HeaderOp, op)
		}
		e, err := decodeEntry(p, "app_changelog_3", prefix, commits, 9, subj, h, data)
		if err != nil {
			if !errors.Is(err, ErrBadSubject) && !errors.Is(err, ErrBadKeyToken) && !errors.Is(err, ErrBadMarker) {
				t.Fatalf("%q: error %v wraps no sentinel", subj, err)
			}
			return
		}
		if e.Seq != 9 {
			t.Fatalf("seq %d", e.Seq)
		}
		if e.Commit != nil {
			if subj != commits {
				t.Fatalf("a marker from %q", subj)
			}
			b, err := json.Marshal(e.Commit)
			if err != nil {
				t.Fatal(err)
			}
			m, err := decodeMarker(b)
			if err != nil || m != *e.Commit {
				t.Fatalf("marker %+v -> %s -> %+v, %v", *e.Commit, b, m, err)
			}
			return
		}
		r := e.Record
		if got := prefix + r.Table + "." + EncodeKey(r.Key); got != subj {
			t.Fatalf("record of %q: table %q key %q encode to %q", subj, r.Table, r.Key, got)
		}
		if r.Delete != (op == OpDelete) || (!r.Delete && !bytes.Equal(r.Value, data)) {
			t.Fatalf("record of %q (op %q): %+v", subj, op, r)
		}
	})
}

// FuzzDecodeAppMeta decodes any document as app metadata: an error wraps
// ErrBadMeta or ErrMetaVersion; a document that decodes encodes to one that
// decodes to the same metadata.
func FuzzDecodeAppMeta(f *testing.F) {
	if b, err := os.ReadFile("testdata/appmeta-v1.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"partitions":4}`))
	f.Add([]byte(`{"version":99,"partitions":4}`))
	f.Add([]byte(`{"version":1,"partitions":4,"tables":{"t":{"kind":"windowed","spec":null}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := DecodeAppMeta(b)
		if err != nil {
			if !errors.Is(err, ErrBadMeta) && !errors.Is(err, ErrMetaVersion) {
				t.Fatalf("%q: error %v wraps neither ErrBadMeta nor ErrMetaVersion", b, err)
			}
			return
		}
		enc, err := EncodeAppMeta(doc)
		if err != nil {
			t.Fatalf("%q decoded to %+v, which does not encode: %v", b, doc, err)
		}
		again, err := DecodeAppMeta(enc)
		if err != nil || !reflect.DeepEqual(again, doc) {
			t.Fatalf("%q -> %+v -> %s -> %+v, %v", b, doc, enc, again, err)
		}
	})
}

// FuzzGroupView applies any sequence of group bucket messages (leader,
// assignment, member states, deletes; any values) to a watcher's view: it
// never panics, a member's state re-encodes to one that applies to the
// same view, and the views handed out are deep copies.
func FuzzGroupView(f *testing.F) {
	st, _ := json.Marshal(status.MemberState{Generation: 3, Actives: []int{0, 2}, Standbys: []int{1},
		Positions: map[int]uint64{0: 5}, HTTP: "127.0.0.1:8080", Instance: "i1", Started: time.Unix(5, 0).UTC()})
	a, _ := json.Marshal(assign.Assign(assign.Assignment{}, []string{"n0", "n1"}, 4, 1))
	// The input: messages separated by 0x00, each "KEY\x01VALUE"; a value
	// starting with 0x02 is a delete.
	join := func(msgs ...string) []byte { return []byte(strings.Join(msgs, "\x00")) }
	f.Add(join("member.n0\x01"+string(st), "assignment\x01"+string(a), "leader\x01n0"))
	f.Add(join("member.n0\x01{", "assignment\x01[]", "member.n0\x01\x02", "leader\x01\x02"))
	f.Add(join("member.\x01null", "assignment\x01{\"actives\":null,\"standbys\":[[\"x\"]]}", "other\x01x"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		v := &viewState{view: port.GroupView{Members: map[string]status.MemberState{}}, raw: map[string][]byte{}}
		for i, m := range bytes.Split(in, []byte{0}) {
			key, value, _ := bytes.Cut(m, []byte{1})
			removed := len(value) > 0 && value[0] == 2
			v.apply(string(key), value, uint64(i+1), removed, log)
		}
		c := cloneView(v.view)
		if !reflect.DeepEqual(c, v.view) {
			t.Fatalf("clone %+v differs from %+v", c, v.view)
		}
		for node, st := range v.view.Members {
			if st.Node != node {
				t.Fatalf("member %q has node %q", node, st.Node)
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatalf("member %q: %+v does not encode: %v", node, st, err)
			}
			w := &viewState{view: port.GroupView{Members: map[string]status.MemberState{}}, raw: map[string][]byte{}}
			w.apply(groupMemberPrefix+node, b, 1, false, log)
			if got := w.view.Members[node]; !reflect.DeepEqual(normalizeState(got), normalizeState(st)) {
				t.Fatalf("member %q: %+v -> %s -> %+v", node, st, b, got)
			}
		}
		for p := range v.view.Assignment.Actives {
			_ = v.view.Assignment.Owner(p)
		}
		_ = v.view.Assignment.StandbysOf("n0")
	})
}

// normalizeState makes empty and nil slices and maps alike (the JSON of a
// member state omits them).
func normalizeState(st status.MemberState) status.MemberState {
	if len(st.Standbys) == 0 {
		st.Standbys = nil
	}
	if len(st.Positions) == 0 {
		st.Positions = nil
	}
	if len(st.Actives) == 0 {
		st.Actives = nil
	}
	return st
}

// FuzzQueryTimeout reads any Edgetables-Timeout header of a routed query:
// the handler's deadline is never in the past and never more than the
// timeout asked for, or the default without a usable one.
func FuzzQueryTimeout(f *testing.F) {
	for _, s := range []string{"", "1500", "0", "-1", "x", "9223372036854775807", "10000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m := nats.NewMsg("q")
		m.Header.Set(HeaderQueryTimeout, v)
		before := time.Now()
		ctx, cancel := queryContext(m)
		defer cancel()
		dl, ok := ctx.Deadline()
		if !ok || !dl.After(before) {
			t.Fatalf("header %q: deadline %v (%v after now)", v, dl, dl.Sub(before))
		}
		if ctx.Err() != nil {
			t.Fatalf("header %q: context ended at once", v)
		}
	})
}
