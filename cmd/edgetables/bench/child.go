package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The spawned edgetables nodes of the footprint and failover scenarios.

// stopTimeout is how long stop waits after SIGTERM before it kills.
const stopTimeout = 15 * time.Second

// errorOutput is how much of a node's output its errors show; the tail
// keeps more (see tail.since).
const errorOutput = 8 << 10

// child is a spawned edgetables node.
type child struct {
	name   string // for errors and logs
	cmd    *exec.Cmd
	http   string
	client *http.Client
	out    *tail
	exited chan struct{} // closed when the process has been waited for
	err    error         // Wait's error, once exited
	killed bool          // kill sent SIGKILL: its exit is expected
}

// executable returns the edgetables binary to start: Config.Executable, or
// this program.
func (e *env) executable() (string, error) {
	if e.cfg.Executable != "" {
		return e.cfg.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this executable: %w", err)
	}
	return exe, nil
}

// spawn starts `exe run` with args, its output kept in a tail buffer (and
// written to logPath too, unless empty) and the EDGETABLES_ variables of
// this environment left out (the flags decide). The caller stops it.
func spawn(name, exe, httpAddr string, args []string, logPath string) (*child, error) {
	c := &child{name: name, http: httpAddr, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * readBackWorkers}}, out: &tail{max: 64 << 10}, exited: make(chan struct{})}
	c.cmd = exec.Command(exe, append([]string{"run"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDGETABLES_") {
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	var logFile *os.File
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("node %s's log: %w", name, err)
		}
		logFile = f
		c.cmd.Stdout = io.MultiWriter(c.out, f)
		c.cmd.Stderr = c.cmd.Stdout
	}
	if err := c.cmd.Start(); err != nil {
		if logFile != nil {
			_ = logFile.Close()
		}
		return nil, fmt.Errorf("start %s run (node %s): %w", exe, name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		if logFile != nil {
			_ = logFile.Close()
		}
		close(c.exited)
	}()
	return c, nil
}

// alive returns an error if the process has exited.
func (c *child) alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("node %s exited (%v); its output ends with:\n%s", c.name, c.err, c.out.last(errorOutput))
	default:
		return nil
	}
}

// waitReady waits until /readyz answers 200.
func (c *child) waitReady(ctx context.Context) error {
	return waitUntil(ctx, "/readyz of node "+c.name, 10*time.Millisecond, func() (bool, error) {
		if err := c.alive(); err != nil {
			return false, err
		}
		resp, err := c.client.Get("http://" + c.http + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// kill sends SIGKILL and waits until the process is gone.
func (c *child) kill() error {
	c.killed = true
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		select {
		case <-c.exited: // gone already
		default:
			return fmt.Errorf("kill node %s: %w", c.name, err)
		}
	}
	<-c.exited
	return nil
}

// stop sends SIGTERM and waits up to stopTimeout, then kills. It may be
// called more than once; a node stopped by kill stops without error.
func (c *child) stop() error {
	defer c.client.CloseIdleConnections()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("node %s did not stop within %s of SIGTERM; killed; its output ends with:\n%s", c.name, stopTimeout, c.out.last(errorOutput))
	}
	if c.err != nil && !c.killed {
		return fmt.Errorf("node %s exited with %w; its output ends with:\n%s", c.name, c.err, c.out.last(errorOutput))
	}
	return nil
}

func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ps, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// freePorts returns n distinct loopback ports that were free a moment
// ago, picked below Linux's ephemeral range (32768 and up): a port from
// that range (127.0.0.1:0) can be taken by one of the cluster's own
// outgoing connections before a node, or a restarted one, binds it.
func freePorts(n int) ([]int, error) {
	const low, high = 20000, 32000
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("find %d free ports between %d and %d: found %d", n, low, high, len(ports))
		}
		port := low + rand.IntN(high-low)
		if slices.Contains(ports, port) {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu      sync.Mutex
	max     int
	b       []byte
	written int64 // bytes written in all
}

// Write implements io.Writer.
func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	t.written += int64(len(p))
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// last returns the last n bytes of what is kept.
func (t *tail) last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) <= n {
		return string(t.b)
	}
	return "…" + string(t.b[len(t.b)-n:])
}

// String returns what is kept.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// mark returns a position in the output, for since.
func (t *tail) mark() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written
}

// since returns what was written after mark, as much of it as is kept.
func (t *tail) since(mark int64) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.written - mark
	if n <= 0 {
		return ""
	}
	if n > int64(len(t.b)) {
		return "…" + string(t.b)
	}
	return string(t.b[int64(len(t.b))-n:])
}
