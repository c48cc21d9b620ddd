package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

type statusCmd struct {
	HTTP     string        `help:"HTTP API of any node: http(s)://host:port (a trailing /v1/status is accepted)." default:"http://127.0.0.1:8080"`
	Timeout  time.Duration `help:"How long to wait for each answer." default:"5s"`
	JSON     bool          `help:"Print the raw JSON of /v1/status."`
	Watch    bool          `help:"Refresh until every partition of the node is active."`
	Interval time.Duration `help:"Time between refreshes with --watch." default:"1s"`

	httpClientFlags
}

// nodeStatus is the part of /v1/status the command shows.
type nodeStatus struct {
	Node       string                   `json:"node"`
	Ready      bool                     `json:"ready"`
	NotReady   []string                 `json:"not_ready"`
	Events     uint64                   `json:"events_processed"`
	Records    uint64                   `json:"changelog_records"`
	DeadLetter map[string]uint64        `json:"dead_letters"`
	Partitions []status.PartitionStatus `json:"partitions"`
	Cluster    *status.ClusterStatus    `json:"cluster"`
	Global     *status.GlobalStatus     `json:"global"`
}

func (s *statusCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
	url, err := statusBase(s.HTTP)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: --http %q: %v\n", s.HTTP, err)
		return exitUsage
	}
	if s.Timeout <= 0 {
		fmt.Fprintf(stderr, "edgetables: error: --timeout %s: must be positive\n", s.Timeout)
		return exitUsage
	}
	if s.Interval <= 0 {
		fmt.Fprintf(stderr, "edgetables: error: --interval %s: must be positive\n", s.Interval)
		return exitUsage
	}
	client, token, err := s.httpClientFlags.client()
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: %v\n", err)
		return exitUsage
	}
	tty := isTerminal(stdout)
	for i := 0; ; i++ {
		body, code := s.fetch(ctx, client, token, url, stderr)
		if code >= 0 {
			return code
		}
		var st nodeStatus
		if err := json.Unmarshal(body, &st); err != nil {
			fmt.Fprintf(stderr, "edgetables: status: %v\n", err)
			return 1
		}
		switch {
		case s.Watch && tty:
			fmt.Fprint(stdout, "\033[H\033[2J") // clear the screen
		case s.Watch && i > 0:
			fmt.Fprintf(stdout, "\n--- %s\n", time.Now().Format(time.TimeOnly))
		}
		if s.JSON {
			_, _ = stdout.Write(body)
		} else {
			printStatus(stdout, st)
		}
		if !s.Watch || allActive(st) {
			return 0
		}
		select {
		case <-ctx.Done():
			return 1
		case <-time.After(s.Interval):
		}
	}
}

// fetch gets /v1/status; code is the exit status on failure, else -1.
func (s *statusCmd) fetch(ctx context.Context, client *http.Client, token, url string, stderr io.Writer) (body []byte, code int) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/status", nil)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: --http %q: %v\n", s.HTTP, err)
		return nil, exitUsage
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: status: %v\n", err)
		return nil, 1
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: status: GET %s: %v\n", req.URL, err)
		return nil, 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "edgetables: status: GET %s: %s%s\n", req.URL, resp.Status, errorText(body))
		return nil, 1
	}
	return body, -1
}

// allActive reports whether the node is ready and none of its partitions
// is recovering.
func allActive(st nodeStatus) bool {
	for _, p := range st.Partitions {
		if p.State == status.StateRecovering {
			return false
		}
	}
	return st.Ready
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printStatus writes the status as tables.
func printStatus(w io.Writer, st nodeStatus) {
	fmt.Fprintf(w, "node %s  ready %v  events %d  changelog records %d  dead letters %d\n",
		st.Node, st.Ready, st.Events, st.Records, sum(st.DeadLetter))
	for _, r := range st.NotReady {
		fmt.Fprintf(w, "  not ready: %s\n", r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if cs := st.Cluster; cs != nil {
		fmt.Fprintf(w, "\ncluster: leader %s  generation %d  members %d\n", cs.Leader, cs.Generation, len(cs.Members))
		fmt.Fprintln(tw, "MEMBER\tGENERATION\tACTIVES\tSTANDBYS\tHTTP")
		for _, m := range cs.Members {
			fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%s\n", m.Node, m.Generation, m.Actives, m.Standbys, m.HTTP)
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "PARTITION\tACTIVE\tSTANDBYS\tSTATE\tSOURCE SEQ")
		for p, owner := range cs.Assignment.Actives {
			state, pos := "moving", "-"
			for _, m := range cs.Members {
				if m.Node == owner && slices.Contains(m.Actives, p) {
					state, pos = "active", fmt.Sprint(m.Positions[p])
				}
			}
			var standbys []string
			if p < len(cs.Assignment.Standbys) {
				standbys = cs.Assignment.Standbys[p]
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p, owner, strings.Join(standbys, ","), state, pos)
		}
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "\non %s:\n", st.Node)
	fmt.Fprintln(tw, "PARTITION\tSTATE\tAPPLIED\tHIGH WATER\tLAG\tSOURCE SEQ\tBUFFERED")
	for _, p := range st.Partitions {
		lag := uint64(0)
		if p.HighWater > p.AppliedOffset {
			lag = p.HighWater - p.AppliedOffset
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\n", p.Partition, p.State, p.AppliedOffset, p.HighWater, lag, p.SourceSeq, p.Buffered)
	}
	_ = tw.Flush()
	if g := st.Global; g != nil {
		fmt.Fprintf(w, "global tables: ready %v  applied %d  high water %d\n", g.Ready, g.AppliedOffset, g.HighWater)
	}
	printRecoveries(w, st.Partitions, time.Now())
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// statusBase returns the node's base URL from --http: a URL or host:port,
// with or without the /v1/status path.
func statusBase(s string) (string, error) {
	base := strings.TrimSpace(s)
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := neturl.Parse(base)
	switch {
	case err != nil:
		return "", errors.New("want http://host:port")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("scheme %q: want http:// or https://", u.Scheme)
	case u.Host == "":
		return "", errors.New("no host: want http://host:port")
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1/status")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return strings.TrimSuffix(u.String(), "/"), nil
}

// errorText returns ": " and the message of an error answer: the API's
// {"error"} or the body's first line, shortened.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg, _, _ = strings.Cut(strings.TrimSpace(string(body)), "\n")
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}
