package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/window"
)

// updateGolden rewrites the version 1 golden files of the current
// encoding: go test -run WireGolden ./edge/httpapi/ -update. Review the diff: a
// changed golden file is a changed wire format.
var updateGolden = flag.Bool("update", false, "rewrite the v1 golden files in testdata")

// goldenFile returns testdata/name without its final line break, writing
// b there first when -update is set and b is not nil.
func goldenFile(t *testing.T, name string, b []byte) []byte {
	t.Helper()
	if *updateGolden && b != nil {
		if err := os.WriteFile("testdata/"+name, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(g, []byte("\n"))
}

// TestRoutedWireGolden: routed queries and answers of version 1 (one of
// each kind) are encoded byte for byte as testdata/{query,answer}-v1.json
// and decode back; the same documents as the release before versions
// wrote them (-v0.json: no "v", entries as untagged manager.KeyValue)
// decode to the same values.
func TestRoutedWireGolden(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	queries := []query{
		{V: 1, Op: "get", Table: "counts", Key: []byte("sensor-1")},
		{V: 1, Op: "scan", Table: "counts", Prefix: []byte("sensor-"), After: []byte("sensor-1"), Limit: 100},
		{V: 1, Op: "count", Table: "counts"},
		{V: 1, Op: "windows", Table: "per-min", Key: []byte("sensor-1"), All: true, At: &at},
	}
	answers := []answer{
		{V: 1, Value: []byte("42"), Partition: 3},
		{V: 1, Entries: []entryWire{{Key: []byte("sensor-2"), Value: []byte("7"), Partition: 1}, {Key: []byte("sensor-3"), Value: []byte("9"), Partition: 0}}},
		{V: 1, Count: 12},
		{V: 1, Partition: 2, Windows: []window.Entry{{Window: window.Window{Start: at, End: at.Add(time.Minute)}, Value: []byte(`{"count":3}`)}}},
		{V: 1, Code: CodeKeyNotFound, Error: "table counts: key not found"},
	}
	for _, c := range []struct {
		name string
		want any
		new  func() any // a pointer to an empty value of want's type
	}{
		{"query", queries, func() any { return &[]query{} }},
		{"answer", answers, func() any { return &[]answer{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			enc, err := json.MarshalIndent(c.want, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := goldenFile(t, c.name+"-v1.json", enc)
			if !bytes.Equal(enc, golden) {
				t.Errorf("encoded\n%s\nwant the golden file\n%s", enc, golden)
			}
			for _, file := range []string{c.name + "-v1.json", c.name + "-v0.json"} {
				got := c.new()
				if err := json.Unmarshal(goldenFile(t, file, nil), got); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				v := reflect.ValueOf(got).Elem()
				for i := 0; i < v.Len(); i++ {
					v.Index(i).FieldByName("V").SetInt(max(v.Index(i).FieldByName("V").Int(), 1)) // absent is 1
				}
				if !reflect.DeepEqual(v.Interface(), c.want) {
					t.Errorf("%s decoded to\n%+v\nwant\n%+v", file, v.Interface(), c.want)
				}
			}
		})
	}
}

// TestRoutedWireLaterVersion: a node refuses a query of a later version
// with bad_request (before reading any table).
func TestRoutedWireLaterVersion(t *testing.T) {
	var a answer
	if err := json.Unmarshal((&Router{}).Serve(context.Background(), []byte(`{"v":2,"op":"get","table":"t"}`)), &a); err != nil {
		t.Fatal(err)
	}
	if a.Code != CodeBadRequest || a.V != answerVersion {
		t.Errorf("answer to a version 2 query: %+v, want code %s", a, CodeBadRequest)
	}
}
