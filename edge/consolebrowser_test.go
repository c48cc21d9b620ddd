package edge

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/edge/httpapi"
)

// The browser tests drive the console in a headless Chromium with
// chromedp. They are skipped when no browser is found, unless
// EDGETABLES_BROWSER=1 (CI), which makes a missing browser a failure.
// EDGETABLES_CHROMIUM names the browser's binary (default: chromium,
// chromium-browser, google-chrome or headless-shell on PATH).
// EDGETABLES_CONSOLE_SCREENSHOT=FILE makes TestConsoleInBrowser write a
// screenshot of the console (docs/console.png) after publishing for a while.

// browserPath returns the headless browser to drive, or skips the test.
func browserPath(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}
	if p := os.Getenv("EDGETABLES_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("EDGETABLES_BROWSER") == "1" {
		t.Fatalf("EDGETABLES_BROWSER=1 but no browser found (tried %v): install chromium", names)
	}
	t.Skipf("no headless browser found (tried %v); set EDGETABLES_BROWSER=1 to require one", names)
	return ""
}

// newBrowser starts a headless browser for the test and returns its tab's
// context; each step should run under a timeout derived from it.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath(t)), chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	return ctx
}

// browse runs steps with a timeout, failing the test with what.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, html)
	}
}

// eval evaluates expr in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// until waits for the JavaScript predicate expr to hold in the page.
func until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	browse(t, ctx, what, chromedp.Action[chromedp.Void](func(c context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(25*time.Second))(c, tg)
		return chromedp.Void{}, err
	}))
}

// TestConsoleInBrowser loads the console of a three-node cluster in a real
// browser, looks keys up through its form (a partitioned and a windowed
// table) and checks the partition map it shows against the cluster's.
func TestConsoleInBrowser(t *testing.T) {
	browserPath(t)
	start := time.Now()
	c := newConfiguredCluster(t, 3, func(i int, cfg *Config) {
		g, err := builtin.GlobalJSONTable("config")
		if err != nil {
			t.Error(err)
			return
		}
		cfg.Tables = append(cfg.Tables, g)
	}, "name=count,source=ev.*,key=subject:2,agg=count",
		"name=hourly,source=ev.*,key=subject:2,agg=count,window=1h")
	events := map[string]int{"alpha": 3, "beta": 5, "gamma": 2, "sensor-1": 7, "sensor-2": 4}
	c.publish(events, func(k string) string { return "ev." + k })
	c.expect("count", events)
	n0 := c.live()[0]
	base := "http://" + n0.HTTPAddr()
	req, _ := http.NewRequest("PUT", base+"/v1/tables/config/keys/site-limits", strings.NewReader(`{"max":30}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT a global key: %v %v", resp, err)
	}
	shot := os.Getenv("EDGETABLES_CONSOLE_SCREENSHOT")
	if shot != "" {
		// A minute of traffic at changing rates, for the charts.
		for s := 0; s < 60; s++ {
			more := map[string]int{}
			for k := range events {
				more[k] = 1 + (s%20)*len(k)
			}
			c.publish(more, func(k string) string { return "ev." + k })
			time.Sleep(time.Second)
		}
	}
	ctx := newBrowser(t, 1200, 1500)
	browse(t, ctx, "load the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#partitions tbody tr")))

	// The partition map: 6 partitions, each with its active and standby
	// as the cluster has them, and 3 members with one leader.
	cs := n0.Manager().Cluster()
	until(t, ctx, "partition map", `document.querySelectorAll("#partitions tbody tr").length === 6 && document.querySelectorAll("#members .member").length === 3`)
	for p := 0; p < 6; p++ {
		got := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#partitions tr[data-partition="%d"] td.active').textContent`, p))
		if got != cs.Assignment.Actives[p] {
			t.Errorf("partition %d: console shows active %q, cluster has %q", p, got, cs.Assignment.Actives[p])
		}
	}
	// Every partition's applied offset, as its active owner reports it
	// (GET /v1/cluster/partitions), those n0 does not hold included.
	until(t, ctx, "applied offsets of every partition", `[...document.querySelectorAll("#partitions tbody td.applied")].every(td => /^[0-9]+$/.test(td.textContent))`)
	for p := 0; p < 6; p++ {
		got := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#partitions tr[data-partition="%d"] td.applied').textContent`, p))
		var owner *Node
		for _, n := range c.live() {
			if n.cfg.Name == cs.Assignment.Actives[p] {
				owner = n
			}
		}
		if owner == nil {
			t.Fatalf("partition %d: owner %s is not a live node", p, cs.Assignment.Actives[p])
		}
		var want uint64
		for _, ps := range owner.Manager().Status().Partitions {
			if ps.Partition == p {
				want = ps.AppliedOffset
			}
		}
		if g, _ := strconv.ParseUint(got, 10, 64); g == 0 || g > want {
			t.Errorf("partition %d: console shows applied %q, its owner %s is at %d", p, got, owner.cfg.Name, want)
		}
	}
	if got := eval[string](t, ctx, `document.querySelector("#members .leader").dataset.node`); got != cs.Leader {
		t.Errorf("console shows leader %q, cluster has %q", got, cs.Leader)
	}

	// Tables with their key counts.
	until(t, ctx, "tables", `document.querySelector('#tables tr[data-table="count"] td.keys')?.textContent === "5"`)

	// Look a key up through the form: the value and the partition.
	browse(t, ctx, "look sensor-1 up",
		chromedp.SetValue(chromedp.CSS("#lookup-table"), "count"),
		chromedp.SendKeys(chromedp.CSS("#lookup-key"), "sensor-1"),
		chromedp.Click(chromedp.CSS("#lookup-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#lookup-result td.value")))
	if got := eval[string](t, ctx, `document.querySelector("#lookup-result td.value").textContent`); shot == "" && got != "7" {
		t.Errorf("console shows count/sensor-1 = %q, want 7", got)
	}
	_, api, _ := getJSON(t, n0.HTTPAddr(), "/v1/tables/count/keys/sensor-1")
	if got := eval[string](t, ctx, `document.querySelector("#lookup-result td.partition").textContent`); got != fmt.Sprint(api["partition"]) {
		t.Errorf("console shows partition %s of sensor-1, the API %v", got, api["partition"])
	}

	// A windowed table's key shows its open windows.
	browse(t, ctx, "look a windowed key up",
		chromedp.SetValue(chromedp.CSS("#lookup-table"), "hourly"),
		chromedp.SetValue(chromedp.CSS("#lookup-key"), "beta"),
		chromedp.Click(chromedp.CSS("#lookup-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#lookup-result tr.window td.value")))
	if got := eval[string](t, ctx, `document.querySelector("#lookup-result tr.window td.value").textContent`); shot == "" && got != "5" {
		t.Errorf("console shows the window of hourly/beta = %q, want 5", got)
	}

	// A missing key shows the API's error.
	browse(t, ctx, "look a missing key up",
		chromedp.SetValue(chromedp.CSS("#lookup-table"), "count"),
		chromedp.SetValue(chromedp.CSS("#lookup-key"), "nobody"),
		chromedp.Click(chromedp.CSS("#lookup-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#lookup-result .lookup-error[data-code="key_not_found"]`)))

	// Keys by prefix, with the global table's edit buttons (no token: every scope).
	browse(t, ctx, "list keys by prefix",
		chromedp.SetValue(chromedp.CSS("#browse-table"), "count"),
		chromedp.SetValue(chromedp.CSS("#browse-prefix"), "sensor-"),
		chromedp.Click(chromedp.CSS("#browse-form button[type=submit]")))
	until(t, ctx, "prefix listing", `[...document.querySelectorAll("#browse tbody tr")].map(r => r.dataset.key).join() === "sensor-1,sensor-2"`)

	if shot != "" {
		// Fill the page as an operator would see it, then take the picture.
		browse(t, ctx, "show a listing of the global table",
			chromedp.SetValue(chromedp.CSS("#browse-table"), "config"),
			chromedp.SetValue(chromedp.CSS("#browse-prefix"), "site-"),
			chromedp.Click(chromedp.CSS("#browse-form button[type=submit]")),
			chromedp.SetValue(chromedp.CSS("#lookup-table"), "count"),
			chromedp.SetValue(chromedp.CSS("#lookup-key"), "sensor-1"),
			chromedp.Click(chromedp.CSS("#lookup-form button[type=submit]")),
			chromedp.Sleep(2500*time.Millisecond))
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", shot, len(png))
	}
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

// TestConsoleTokensInBrowser: against a node with tokens the page asks for
// a token on the 401; with a read token it shows the tables but neither the
// cluster (admin) nor the controls that write; a write token brings the
// controls, and a write through them reaches the table.
func TestConsoleTokensInBrowser(t *testing.T) {
	browserPath(t)
	cfg := testConfig(t, t.TempDir(), "name=count,source=ev.*,key=subject:2,agg=count")
	g, err := builtin.GlobalJSONTable("config")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tables = append(cfg.Tables, g)
	if cfg.HTTPTokens, err = httpapi.LoadTokens(writeTokens(t)); err != nil {
		t.Fatal(err)
	}
	n, _ := runNode(t, cfg)
	base := "http://" + n.HTTPAddr()
	ctx := newBrowser(t, 1000, 1000)
	browse(t, ctx, "load the console without a token", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-token")), chromedp.WaitNotVisible(chromedp.CSS("#main")))

	browse(t, ctx, "give a read token",
		chromedp.SendKeys(chromedp.CSS("#login-token"), readToken),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#tables tr[data-table="config"]`)))
	until(t, ctx, "the cluster view says it needs admin", `document.querySelector("#cluster-note").textContent.includes("admin")`)
	if eval[bool](t, ctx, `document.querySelector("#edit-form") !== null || document.querySelectorAll(".edit-button").length > 0`) {
		t.Error("a read token shows the controls that write")
	}
	if got := eval[string](t, ctx, `sessionStorage.getItem("edgetables.token")`); got != readToken {
		t.Errorf("sessionStorage holds %q, want the token given", got)
	}
	// On a phone's screen the page scrolls down, not sideways (wide
	// tables scroll inside their own box).
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the page is %d px wide on a 390 px screen", w)
	}

	// A write token: the edit controls appear and write.
	browse(t, ctx, "give a write token",
		chromedp.Click(chromedp.CSS("#token-button")),
		chromedp.WaitVisible(chromedp.CSS("#login-token")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), writeToken),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#edit-form")),
		chromedp.SetValue(chromedp.CSS("#edit-table"), "config"),
		chromedp.SendKeys(chromedp.CSS("#edit-key"), "site-7"),
		chromedp.SendKeys(chromedp.CSS("#edit-value"), `{"max":12}`),
		chromedp.Click(chromedp.CSS("#edit-put")))
	until(t, ctx, "the write is confirmed", `document.querySelector("#edit-result").textContent.startsWith("saved")`)
	status, body, _ := authRequest(t, http.DefaultClient, "GET", base+"/v1/tables/config/keys/site-7", readToken, "")
	if v, _ := body["value"].(map[string]any); status != 200 || v["max"] != 12.0 {
		t.Errorf("after the console's write: %d %v", status, body)
	}

	// A refused token brings the prompt back.
	browse(t, ctx, "a refused token",
		chromedp.Click(chromedp.CSS("#token-button")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), "not-a-known-token-000"),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	until(t, ctx, "the prompt says the token was refused", `document.querySelector("#login-why").textContent.includes("refused") && !document.querySelector("#login").hidden`)
}
