package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAppShapeExitStatus: flags that do not fit the app's recorded
// metadata exit with status 2 and a message naming what was recorded, what
// was given and the way out, before the node starts: another partition
// count, a table whose aggregation changed. With --reset-table the changed
// table runs, and the output says what the reset did.
func TestAppShapeExitStatus(t *testing.T) {
	dir := t.TempDir()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := []string{"run", "--name=n1", "--data-dir=" + dir, "--nats-listen=127.0.0.1:0", "--http-listen=" + httpAddr,
		"--table=name=c,source=s.*,key=subject:2,agg=count"}
	sum := "--table=name=t,source=s.*,key=subject:2,agg=sum,field=v"
	avg := "--table=name=t,source=s.*,key=subject:2,agg=avg,field=v"

	// run runs the command until it ends or, if it serves, until it is
	// ready; then it stops it.
	run := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stdout, stderr lockedBuffer
		done := make(chan int, 1)
		go func() { done <- realMain(ctx, append(append([]string{}, base...), args...), &stdout, &stderr) }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			select {
			case code := <-done:
				return code, stderr.String()
			default:
			}
			if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					cancel()
					return <-done, stderr.String()
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v neither ended nor became ready:\n%s", args, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if code, out := run(sum); code != 0 {
		t.Fatalf("first run: exit %d:\n%s", code, out)
	}
	for _, c := range []struct {
		name    string
		args    []string
		mention []string
	}{
		{"fewer partitions", []string{sum, "--partitions=4"},
			[]string{"edgetables: error: --partitions 4: the app edgetables was created with 8 partitions", "--partitions 8", "--app"}},
		{"more partitions", []string{sum, "--partitions=16"}, []string{"--partitions 16", "created with 8 partitions"}},
		{"sum to avg", []string{avg}, []string{"table t:", "agg sum → avg", "--reset-table t", "new name"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := run(c.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d:\n%s", code, exitUsage, out)
			}
			for _, m := range c.mention {
				if !strings.Contains(out, m) {
					t.Errorf("output does not mention %q:\n%s", m, out)
				}
			}
			if strings.Contains(out, "node started") {
				t.Errorf("the node started:\n%s", out)
			}
		})
	}
	code, out := run(avg, "--reset-table=t")
	if code != 0 {
		t.Fatalf("run with --reset-table: exit %d:\n%s", code, out)
	}
	for _, m := range []string{"table reset", "starts empty", "node started"} {
		if !strings.Contains(out, m) {
			t.Errorf("output of the reset does not mention %q:\n%s", m, out)
		}
	}
	if code, out := run(avg); code != 0 {
		t.Fatalf("run after the reset: exit %d:\n%s", code, out)
	}
}
