// Package console is the operator's console of a node: a small web page,
// embedded in the binary, that the node's HTTP listener serves at / with
// its assets under /console/, and the short history of the node's counters
// that its charts draw (History).
//
// The page is plain HTML, CSS and JavaScript: no build step, no external
// asset (an edge site is often offline). It reads the node's HTTP API
// (/v1/status, /v1/tables, /v1/history, the keys' routes) with the bearer
// token the user gives it, kept in the browser tab's sessionStorage.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is the path under which the console's assets are served.
const Prefix = "/console/"

// Handler serves the console: GET / answers the page (index.html) and
// GET /console/NAME its assets. Other paths are 404. The assets hold no
// data and need no authentication; the page's data calls go to the API.
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The page runs its own scripts and styles only, talks to its
		// own origin only, and is never framed.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch {
		case r.URL.Path == "/":
			b, err := fs.ReadFile(sub, "index.html")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(b)
		case strings.HasPrefix(r.URL.Path, Prefix) && r.URL.Path != Prefix:
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// Size returns the total size in bytes of the console's assets.
func Size() (int, error) {
	n := 0
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(path)
		n += len(b)
		return err
	})
	return n, err
}
