package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgetables/edgetables/manager"
)

type statusCmd struct {
	HTTP    string        `help:"HTTP API of any node." default:"http://127.0.0.1:8080"`
	Timeout time.Duration `help:"How long to wait for the answer." default:"5s"`
	JSON    bool          `help:"Print the raw JSON of /v1/status."`
}

// nodeStatus is the part of /v1/status the command shows.
type nodeStatus struct {
	Node       string                    `json:"node"`
	Ready      bool                      `json:"ready"`
	Events     uint64                    `json:"events_processed"`
	Records    uint64                    `json:"changelog_records"`
	DeadLetter map[string]uint64         `json:"dead_letters"`
	Partitions []manager.PartitionStatus `json:"partitions"`
	Cluster    *manager.ClusterStatus    `json:"cluster"`
}

func (s *statusCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	url := strings.TrimSuffix(s.HTTP, "/")
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/status", nil)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: error: --http %q: %v\n", s.HTTP, err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "edgetables: status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "edgetables: status: HTTP %d %s %v\n", resp.StatusCode, body, err)
		return 1
	}
	if s.JSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var st nodeStatus
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "edgetables: status: %v\n", err)
		return 1
	}
	printStatus(stdout, st)
	return 0
}

// printStatus writes the status as tables.
func printStatus(w io.Writer, st nodeStatus) {
	fmt.Fprintf(w, "node %s  ready %v  events %d  changelog records %d  dead letters %d\n",
		st.Node, st.Ready, st.Events, st.Records, sum(st.DeadLetter))
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
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
