package edge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/httpapi"
)

// siteValue reads a site's table key at a node: the status code and the
// value's JSON (or the error code).
func siteValue(t *testing.T, n *Node, site, table, key string) (int, string) {
	t.Helper()
	code, body, _ := getJSON(t, n.HTTPAddr(), "/v1/sites/"+site+"/tables/"+table+"/keys/"+key)
	if code != http.StatusOK {
		return code, fmt.Sprint(body["code"])
	}
	b, _ := json.Marshal(body["value"])
	return code, string(b)
}

// waitSiteValue polls a site's table key at the hub node until it is
// want, for up to d.
func waitSiteValue(t *testing.T, hn *Node, site, table, key, want string, d time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var code int
		code, last = siteValue(t, hn, site, table, key)
		if code == http.StatusOK && last == want {
			return
		}
		last = fmt.Sprint(code, " ", last)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("hub: site %s %s/%s = %s, want %s (after %s)", site, table, key, last, want, d)
}

// TestSiteTablesAtHub: two sites' table changelogs are copied to the hub,
// where a hub node serves them read-only: the values equal the sites'
// after publishes, stay readable while a site's link is cut, and catch up
// once it is restored, also by a hub node restarted while the link is
// down. The lag shows in /v1/status and /metrics.
func TestSiteTablesAtHub(t *testing.T) {
	hub := startTestHub(t)
	link := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", hub.leafPort))
	s1, _ := runNode(t, siteConfig(t, t.TempDir(), "s1", link.url()))
	s2, _ := runNode(t, siteConfig(t, t.TempDir(), "s2", fmt.Sprintf("nats-leaf://127.0.0.1:%d", hub.leafPort)))
	hcfg := hubNodeConfig(t, hub, "s1", "s2")
	hcfg.Edge.SiteTablesInterval = 300 * time.Millisecond
	hn, stopHub := runNode(t, hcfg)

	publishIDs(t, s1, "a", 0, 10)
	publishIDs(t, s1, "b", 10, 3)
	publishIDs(t, s2, "a", 0, 7)
	waitCount(t, s1, "count", "a", 10, 15*time.Second)
	waitCount(t, s1, "count", "b", 3, 15*time.Second)
	waitCount(t, s2, "count", "a", 7, 15*time.Second)
	waitSiteValue(t, hn, "s1", "count", "a", "10", 15*time.Second)
	waitSiteValue(t, hn, "s1", "count", "b", "3", 5*time.Second)
	waitSiteValue(t, hn, "s2", "count", "a", "7", 5*time.Second)

	for _, c := range []struct{ site, table, key, code string }{
		{"s2", "count", "b", httpapi.CodeKeyNotFound},   // not at that site
		{"s3", "count", "a", httpapi.CodeSiteNotFound},  // not a site of the hub
		{"s1", "nosuch", "a", httpapi.CodeKeyNotFound},  // no such table at the site
		{"s1", "count", "a*b", httpapi.CodeKeyNotFound}, // a key is any text
	} {
		if code, got := siteValue(t, hn, c.site, c.table, c.key); code != http.StatusNotFound || got != c.code {
			t.Errorf("site %s %s/%s: %d %s, want 404 %s", c.site, c.table, c.key, code, got, c.code)
		}
	}
	// A site's own node is not a hub node.
	if code, got := siteValue(t, s1, "s1", "count", "a"); code != http.StatusNotFound || got != httpapi.CodeSiteNotFound {
		t.Errorf("site node: %d %s, want 404 %s", code, got, httpapi.CodeSiteNotFound)
	}

	// Offline: the site goes on, the hub serves what it took.
	link.Cut()
	publishIDs(t, s1, "a", 20, 5)
	publishIDs(t, s2, "a", 20, 2)
	waitCount(t, s1, "count", "a", 15, 15*time.Second)
	waitSiteValue(t, hn, "s2", "count", "a", "9", 10*time.Second)
	if code, got := siteValue(t, hn, "s1", "count", "a"); code != http.StatusOK || got != "10" {
		t.Fatalf("hub: s1 count/a while cut = %d %s, want the last taken, 10", code, got)
	}
	link.Restore()
	restored := time.Now()
	waitSiteValue(t, hn, "s1", "count", "a", "15", 60*time.Second)
	t.Logf("hub has s1's table again %s after the link came back", time.Since(restored).Round(100*time.Millisecond))
	waitSiteValue(t, hn, "s1", "count", "b", "3", 5*time.Second)

	// The hub node restarted while s1's link is down: it serves its copy
	// (it knows the site's streams from the hub stream's sources).
	link.Cut()
	stopHub()
	hcfg2 := hubNodeConfig(t, hub, "s1", "s2") // new tables, the same data
	hcfg2.DataDir = hcfg.DataDir
	hn, _ = runNode(t, hcfg2)
	waitSiteValue(t, hn, "s1", "count", "a", "15", 10*time.Second)
	link.Restore()

	// Status and metrics: each site's stream, sources and lag.
	_, st, _ := getJSON(t, hn.HTTPAddr(), "/v1/status")
	raw, _ := json.Marshal(st["site_tables"])
	var sts []struct {
		Site    string   `json:"site"`
		Sources []string `json:"sources"`
		Records uint64   `json:"records"`
		Lag     uint64   `json:"lag_records"`
	}
	if err := json.Unmarshal(raw, &sts); err != nil || len(sts) != 2 {
		t.Fatalf("status site_tables: %s (%v)", raw, err)
	}
	for _, s := range sts {
		if len(s.Sources) != 4 || s.Records == 0 {
			t.Errorf("status of site %s: %+v, want 4 sources (partitions) and records", s.Site, s)
		}
	}
	t.Logf("hub status site_tables: %s", raw)
	resp, err := http.Get("http://" + hn.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`edgetables_site_changelog_lag_records{site="s1"}`, `edgetables_site_changelog_records{site="s2"}`,
		`edgetables_site_changelog_last_active_seconds{site="s1"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
