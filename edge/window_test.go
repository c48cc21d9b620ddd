package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/edge/httpapi"
	"github.com/edgetables/edgetables/jetstream"
)

// TestHTTPWindows runs a windowed count and a set table built from specs
// and reads them over HTTP.
func TestHTTPWindows(t *testing.T) {
	n, _ := startNode(t, t.TempDir(),
		"name=wc,source=sensors.*.temp,key=subject:2,agg=count,window=24h,time=json:ts",
		"name=users,source=sensors.*.temp,key=subject:2,agg=set,field=user")
	day := 24 * time.Hour
	cur := time.Now().UTC().Truncate(day) // the current window's start (days are aligned on the epoch)
	prev := cur.Add(-day)
	ev := func(ts time.Time, user string) string {
		return fmt.Sprintf(`{"ts": %q, "user": %q}`, ts.Format(time.RFC3339), user)
	}
	publish(t, n, "sensors.d1.temp", ev(prev.Add(time.Second), "alice"))
	publish(t, n, "sensors.d1.temp", ev(cur.Add(time.Second), "bob"))
	publish(t, n, "sensors.d1.temp", ev(cur.Add(2*time.Second), "alice"))
	publish(t, n, "sensors.d1.temp", ev(cur.Add(-3*day), "carol")) // late: its window is closed
	waitValue(t, n, "users", "d1", `["alice","bob","carol"]`)
	waitValue(t, n, "wc", "d1", `2`) // no window=: now

	base := n.HTTPAddr()
	get := func(q string) (int, map[string]any) {
		code, body, _ := getJSON(t, base, "/v1/tables/wc/keys/d1"+q)
		return code, body
	}
	type win struct {
		Start, End time.Time
		Value      json.RawMessage
	}
	decode := func(v any, out any) {
		b, _ := json.Marshal(v)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
	}

	code, body := get("?window=all")
	var all []win
	decode(body["windows"], &all)
	if code != 200 || len(all) != 2 || !all[0].Start.Equal(prev) || !all[0].End.Equal(cur) || string(all[0].Value) != "1" ||
		!all[1].Start.Equal(cur) || string(all[1].Value) != "2" {
		t.Errorf("window=all: %d %v", code, body)
	}
	code, body = get("?window=now")
	var w win
	decode(body["window"], &w)
	if code != 200 || !w.Start.Equal(cur) || !w.End.Equal(cur.Add(day)) || fmt.Sprint(body["value"]) != "2" {
		t.Errorf("window=now: %d %v", code, body)
	}
	code, body = get("?window=" + url.QueryEscape(prev.Add(time.Hour).Format(time.RFC3339)))
	decode(body["window"], &w)
	if code != 200 || !w.Start.Equal(prev) || fmt.Sprint(body["value"]) != "1" {
		t.Errorf("window=<yesterday>: %d %v", code, body)
	}
	for q, want := range map[string]struct {
		code int
		err  string
	}{
		"?window=" + url.QueryEscape(cur.Add(-3*day).Format(time.RFC3339)): {404, httpapi.CodeKeyNotFound},
		"?window=yesterday":            {400, httpapi.CodeBadRequest},
		"?window=0001-01-01T00:00:00Z": {400, httpapi.CodeBadRequest}, // not the current window
	} {
		if code, body := get(q); code != want.code || body["code"] != want.err {
			t.Errorf("%s: %d %v, want %d %s", q, code, body, want.code, want.err)
		}
	}
	if code, body, _ := getJSON(t, base, "/v1/tables/users/keys/d1?window=now"); code != 400 || body["code"] != httpapi.CodeBadRequest {
		t.Errorf("window= on a table without windows: %d %v", code, body)
	}
	// The late event went to the dead-letter subject, once per table
	// refusing it (the set table took it).
	_, st, _ := getJSON(t, base, "/v1/status")
	if dl, _ := st["dead_letters"].(map[string]any); fmt.Sprint(dl["wc"]) != "1" {
		t.Errorf("dead letters: %v, want wc 1", st["dead_letters"])
	}
	// Listings show windows as KEY@START, and page through them.
	_, page, _ := getJSON(t, base, "/v1/tables/wc/keys?limit=1")
	next, _ := page["next"].(string)
	if want := "d1@" + prev.Format(time.RFC3339Nano); next != want {
		t.Fatalf("first page %v: next %q, want %q", page, next, want)
	}
	_, page, _ = getJSON(t, base, "/v1/tables/wc/keys?limit=1&after="+url.QueryEscape(next))
	var entries []struct{ Key string }
	decode(page["entries"], &entries)
	if len(entries) != 1 || entries[0].Key != "d1@"+cur.Format(time.RFC3339Nano) {
		t.Errorf("second page: %v", page)
	}
	_, tables, _ := getJSON(t, base, "/v1/tables")
	var infos []struct {
		Name string
		Keys int
		Spec map[string]string
	}
	decode(tables["tables"], &infos)
	if len(infos) != 2 || infos[1].Name != "wc" || infos[1].Keys != 2 || infos[1].Spec["window"] != "24h0m0s" || infos[1].Spec["time"] != "json:ts" {
		t.Errorf("tables: %+v, want wc with 2 windows of 24h", infos)
	}
}

// TestSpecTombstoneTTL: a spec's tombstone-ttl reaches the changelog: the
// tombstone of a closed window carries it as its Nats-TTL.
func TestSpecTombstoneTTL(t *testing.T) {
	for _, c := range []struct {
		ttl, want string
	}{{"tombstone-ttl=90s", "90"}, {"tombstone-ttl=forever", "86400"}} { // forever: the node's --tombstone-ttl (24h)
		t.Run(c.ttl, func(t *testing.T) {
			n, _ := startNode(t, t.TempDir(), "name=w,source=t.*,key=subject:2,agg=count,window=1s,expires=1s,time=now,"+c.ttl)
			publish(t, n, "t.k1", `{}`)
			nc, err := nats.Connect(n.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := natsjs.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for {
				if tomb := findTombstone(ctx, t, js, n.cfg.App, n.cfg.Partitions); tomb != nil {
					if got := tomb.Header.Get("Nats-TTL"); got != c.want {
						t.Fatalf("tombstone %s has Nats-TTL %q, want %q", tomb.Subject, got, c.want)
					}
					return
				}
				select {
				case <-ctx.Done():
					t.Fatal("no tombstone of the closed window in the changelog")
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
}

// findTombstone returns the first tombstone record in app's changelog
// streams, or nil.
func findTombstone(ctx context.Context, t *testing.T, js natsjs.JetStream, app string, partitions int) *natsjs.RawStreamMsg {
	t.Helper()
	for p := range partitions {
		st, err := js.Stream(ctx, jetstream.ChangelogStream(app, p))
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // removed by compaction
			}
			if m.Header.Get("Edgetables-Op") == "del" {
				return m
			}
		}
	}
	return nil
}
