package manager

import (
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager/window"
)

func TestWindowIndexTake(t *testing.T) {
	ws := window.Tumbling(time.Minute, time.Minute)
	closeAt := func(s int64) time.Time { return closeAt(ws, windowAt(ws, s)) }
	min := func(i int) time.Time { return time.Unix(0, 0).Add(time.Duration(i) * time.Minute) }
	x := newWindowIndex()
	for _, k := range []struct {
		key string
		m   int
	}{{"b", 0}, {"a", 0}, {"b", 0}, {"c", 1}, {"a", 1}, {"a", 5}} {
		x.add(windowKey([]byte(k.key), min(k.m)))
	}
	names := func(ds []dueWindow) string {
		var out []string
		for _, d := range ds {
			k, start, _ := splitWindowKey(d.sk)
			out = append(out, string(k)+"@"+time.Unix(0, start).UTC().Format("04"))
		}
		return strings.Join(out, " ")
	}
	// Nothing due before minute 0's windows close (at minute 2).
	if due, tr := x.take(min(2).Add(-1), closeAt, 10); len(due) != 0 || tr {
		t.Fatalf("before any close: %s, truncated %v", names(due), tr)
	}
	// Minutes 0 and 1 close by minute 3; at most 3 at a time, in order,
	// without duplicates.
	due, tr := x.take(min(3), closeAt, 3)
	if got := names(due); got != "a@00 b@00 a@01" || !tr {
		t.Fatalf("first take: %q, truncated %v; want \"a@00 b@00 a@01\", true", got, tr)
	}
	due, tr = x.take(min(3), closeAt, 3)
	if got := names(due); got != "c@01" || tr {
		t.Fatalf("second take: %q, truncated %v; want \"c@01\", false", got, tr)
	}
	if n := x.len(); n != 1 || len(x.starts) != 1 {
		t.Fatalf("left %d windows in %d starts, want 1 in 1", n, len(x.starts))
	}
}
