package bench

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgetables/edgetables/jetstream"
)

// Footprint settings and targets.
const (
	modulePath     = "github.com/edgetables/edgetables"
	idleRSSTarget  = 30 << 20
	peakRSSTarget  = 128 << 20
	binaryTarget   = 25 << 20
	idleSettle     = time.Second
	rssSampleEvery = 100 * time.Millisecond
	footprintApp   = "benchfp"
	footprintNode  = "bench-footprint"
)

// footprint measures the resident memory of an edgetables node (the binary,
// started as `edgetables run` with two tables) idle and under the
// pipeline's load, and the size of the stripped binary.
//
// The binary is the release build (static and stripped, as
// deploy/release.sh builds it) when the go command and the edgetables
// module are at hand: what a device runs. A build linked against the C
// library (cgo, Go's default where a C compiler is installed) maps libc
// and its loader too, about 1.4 MiB more resident. --executable picks the
// binary the nodes run instead; without the module the running
// executable is used.
func (e *env) footprint(ctx context.Context) ([]Result, error) {
	release, err := e.releaseBinary(ctx)
	if err != nil {
		return nil, err
	}
	var out []Result
	if !e.cfg.NoSpawn {
		exe, what, err := e.footprintExecutable(release)
		if err != nil {
			return nil, err
		}
		rs, err := e.spawnFootprint(ctx, exe, what)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	r, err := e.binarySize(release)
	if err != nil {
		return nil, err
	}
	return append(out, r), nil
}

// footprintExecutable returns the binary whose memory the footprint
// scenario and the sweep's idle curve measure, with words that name it:
// Executable if set, else the release build release (see releaseBinary)
// unless that is "", else the running executable.
func (e *env) footprintExecutable(release string) (exe, what string, err error) {
	if e.cfg.Executable == "" && release != "" {
		return release, "the release build (" + releaseBuild + ")", nil
	}
	if exe, err = e.executable(); err != nil {
		return "", "", err
	}
	return exe, filepath.Base(exe), nil
}

// releaseBuild is how releaseBinary builds: deploy/release.sh's settings.
const releaseBuild = "CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'"

// releaseBinary builds the edgetables module's binary as deploy/release.sh
// does for this platform (static, stripped) when the go command and the
// module are at hand, and returns its path; "" when they are not.
func (e *env) releaseBinary(ctx context.Context) (string, error) {
	dir := e.cfg.ModuleDir
	if dir == "" {
		dir = findModule(ctx)
	}
	if dir == "" || dir == "-" {
		return "", nil
	}
	bin := filepath.Join(e.dir, "edgetables-release")
	e.log.Info("bench: footprint: building the release binary", "module", dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/edgetables")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s in %s: %w\n%s", releaseBuild, dir, err, out)
	}
	return bin, nil
}

// spawnFootprint starts the node twice on one data directory: idle, for
// its resident memory once ready; then, after the pipeline's events were
// put into its source stream while it was stopped, for its peak resident
// memory until it has committed them all (the pipeline scenario's load, in
// the binary).
// exe is the binary, what says which it is in the rows' notes.
func (e *env) spawnFootprint(ctx context.Context, exe, what string) ([]Result, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(port)
	dataDir := filepath.Join(e.dir, "footprint")
	args := nodeArgs(dataDir, httpAddr, e.cfg.Partitions, 2)
	e.log.Info("bench: footprint: idle node", "exe", exe)
	idle, err := idleRSS(ctx, exe, httpAddr, args)
	if err != nil {
		return nil, err
	}

	n, keys := e.cfg.Events, e.cfg.Keys
	e.log.Info("bench: footprint: loading the stopped node's source stream", "events", n, "keys", keys)
	counts, last, err := e.preload(ctx, dataDir, n, keys)
	if err != nil {
		return nil, err
	}

	e.log.Info("bench: footprint: node under load")
	t0 := time.Now()
	c, err := spawn(footprintNode, exe, httpAddr, args, "")
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.stop() }()
	pid := c.cmd.Process.Pid
	var sampled int64
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		for {
			if v, err := procStatusBytes(pid, "VmRSS"); err == nil {
				sampled = max(sampled, v)
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	stopSampler := func() { stopSampling(); wg.Wait() }
	defer stopSampler()
	var st struct {
		Partitions []struct {
			SourceSeq uint64 `json:"source_seq"`
		} `json:"partitions"`
	}
	err = waitUntil(ctx, "the spawned node to commit every event", 10*time.Millisecond, func() (bool, error) {
		if err := c.alive(); err != nil {
			return false, err
		}
		if err := getJSON(ctx, c.client, "http://"+c.http+"/v1/status", &st); err != nil {
			return false, nil // not listening yet
		}
		for _, p := range st.Partitions {
			if p.SourceSeq < last {
				return false, nil
			}
		}
		return len(st.Partitions) == e.cfg.Partitions, nil
	})
	if err != nil {
		return nil, err
	}
	took := time.Since(t0)
	peak, err := procStatusBytes(pid, "VmHWM")
	if err != nil {
		return nil, err
	}
	stopSampler()
	e.log.Info("bench: footprint: every event committed", "took", took.Round(time.Millisecond))
	if err := checkNode(ctx, c.client, c.http, counts); err != nil {
		return nil, fmt.Errorf("wrong table contents in the spawned node: %w", err)
	}
	if err := c.stop(); err != nil {
		return nil, err
	}

	return []Result{{
		Name: fmt.Sprintf("footprint: idle RSS, 2 tables, %d partitions", e.cfg.Partitions), Unit: "MiB", Value: mib(idle),
		Target: "< 30 MiB", Met: ptr(idle < idleRSSTarget),
		Note: fmt.Sprintf("VmRSS of `edgetables run` (a count and a max table), %s, %s after /readyz", what, idleSettle),
	}, {
		Name: "footprint: peak RSS under the pipeline load", Unit: "MiB", Value: mib(peak),
		Target: "≤ 128 MiB", Met: ptr(peak <= peakRSSTarget),
		Note: fmt.Sprintf("VmHWM of the same node restarted with %s events over %s keys for its count table in its source stream, until it committed them all: %s from the start of the process (%s events/s); highest VmRSS sampled every %s: %.1f MiB",
			count(n), count(keys), took.Round(time.Millisecond), short(float64(n)/took.Seconds()), rssSampleEvery, mib(sampled)),
	}}, nil
}

// nodeArgs returns the flags of a footprint node with its data in dataDir,
// its HTTP API on httpAddr, partitions partitions and tables tables: the
// pipeline's count table, a max table over another subject that the load
// leaves alone, and from the third on count tables over subjects of their
// own.
func nodeArgs(dataDir, httpAddr string, partitions, tables int) []string {
	args := []string{"--name=" + footprintNode, "--app=" + footprintApp, "--data-dir=" + dataDir,
		"--nats-listen=127.0.0.1:0", "--http-listen=" + httpAddr,
		"--partitions=" + strconv.Itoa(partitions), "--log-level=warn"}
	for i := range tables {
		switch i {
		case 0:
			args = append(args, "--table=name=counts,source="+footprintApp+".ev.*,key=subject:3,agg=count")
		case 1:
			args = append(args, "--table=name=maxv,source="+footprintApp+".temp.*,key=subject:3,agg=max,field=value")
		default:
			args = append(args, fmt.Sprintf("--table=name=t%d,source=%s.t%d.*,key=subject:3,agg=count", i, footprintApp, i))
		}
	}
	return args
}

// idleRSS starts `exe run` with args, waits until it is ready and
// idleSettle more, and returns its resident memory (VmRSS); the node is
// stopped before it returns.
func idleRSS(ctx context.Context, exe, httpAddr string, args []string) (int64, error) {
	c, err := spawn(footprintNode, exe, httpAddr, args, "")
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.stop() }()
	if err := c.waitReady(ctx); err != nil {
		return 0, err
	}
	select {
	case <-time.After(idleSettle):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	idle, err := procStatusBytes(c.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	return idle, c.stop()
}

// preload opens the stopped node's JetStream storage in dataDir with an
// embedded server of its own, publishes n events over keys keys into the
// node's source stream and shuts the server down. It returns the expected
// count of every key and the last sequence of the stream.
func (e *env) preload(ctx context.Context, dataDir string, n, keys int) (counts []int32, last uint64, err error) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	srv, err := jetstream.StartServer(sctx, jetstream.ServerConfig{Name: footprintNode, Listen: "127.0.0.1:0", StoreDir: dataDir, Logger: e.plog})
	if err != nil {
		return nil, 0, fmt.Errorf("open the node's storage: %w", err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("edgetables-bench-preload")
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	pub, err := newPublisher(nc)
	if err != nil {
		return nil, 0, err
	}
	if counts, _, err = events(ctx, pub, jetstream.SourceStream(footprintApp), footprintApp+".ev.", n, keys); err != nil {
		return nil, 0, fmt.Errorf("publish into the node's source: %w", err)
	}
	st, err := pub.js.Stream(ctx, jetstream.SourceStream(footprintApp))
	if err != nil {
		return nil, 0, fmt.Errorf("the node's source stream: %w", err)
	}
	state := st.CachedInfo().State
	if state.Msgs != uint64(n) {
		return nil, 0, fmt.Errorf("the node's source stream holds %d messages, want %d", state.Msgs, n)
	}
	return counts, state.LastSeq, nil
}

// checkNode reads both tables of the spawned node over HTTP, page by page:
// every count must be the expected one, and the max table, whose source
// got no event, must be empty.
func checkNode(ctx context.Context, client *http.Client, addr string, counts []int32) error {
	want := 0
	for _, c := range counts {
		if c > 0 {
			want++
		}
	}
	for _, table := range []string{"counts", "maxv"} {
		seen, after := 0, ""
		for {
			var page struct {
				Entries []struct {
					Key   string  `json:"key"`
					Value float64 `json:"value"`
				} `json:"entries"`
				Next string `json:"next"`
			}
			u := "http://" + addr + "/v1/tables/" + table + "/keys?limit=10000"
			if after != "" {
				u += "&after=" + url.QueryEscape(after)
			}
			if err := getJSON(ctx, client, u, &page); err != nil {
				return err
			}
			for _, en := range page.Entries {
				k, err := strconv.Atoi(strings.TrimPrefix(en.Key, "k"))
				if table != "counts" || err != nil || k < 0 || k >= len(counts) || keyName(k) != en.Key {
					return fmt.Errorf("table %s: unexpected key %q", table, en.Key)
				}
				if w := float64(counts[k]); en.Value != w || w == 0 {
					return fmt.Errorf("table %s: key %s = %v, want %v", table, en.Key, en.Value, w)
				}
				seen++
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if table == "counts" && seen != want {
			return fmt.Errorf("table %s holds %d keys, want %d", table, seen, want)
		}
	}
	return nil
}

// binarySize reports the size of the release binary (see releaseBinary),
// or when there is none ("") the running executable's, saying whether it
// is stripped.
func (e *env) binarySize(release string) (Result, error) {
	if release != "" {
		fi, err := os.Stat(release)
		if err != nil {
			return Result{}, err
		}
		return Result{
			Name: "footprint: binary size, stripped", Unit: "MiB", Value: mib(fi.Size()),
			Target: "< 25 MiB", Met: ptr(fi.Size() < binaryTarget),
			Note: fmt.Sprintf("%s ./cmd/edgetables (deploy/release.sh's build): %s bytes", releaseBuild, count(int(fi.Size()))),
		}, nil
	}
	exe, err := e.executable()
	if err != nil {
		return Result{}, err
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return Result{}, err
	}
	stripped := false
	if f, err := elf.Open(exe); err == nil {
		stripped = f.Section(".symtab") == nil
		_ = f.Close()
	}
	r := Result{
		Name: "footprint: binary size of the running executable, not stripped", Unit: "MiB", Value: mib(fi.Size()),
		Target: "< 25 MiB stripped",
		Note:   fmt.Sprintf("no stripped build (no Go toolchain or edgetables module found, or the build was skipped); %s: %s bytes", exe, count(int(fi.Size()))),
	}
	switch {
	case stripped:
		r.Name = "footprint: binary size of the running executable, stripped"
		r.Met = ptr(fi.Size() < binaryTarget)
	case fi.Size() < binaryTarget: // stripping only makes it smaller
		r.Met = ptr(true)
	}
	return r, nil
}

// findModule returns the root of the edgetables module holding the working
// directory, or "" when there is none or no go command.
func findModule(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return ""
	}
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			if strings.Trim(strings.TrimSpace(mod), `"`) == modulePath {
				return filepath.Dir(gomod)
			}
			return ""
		}
	}
	return ""
}

// procStatusBytes returns a "kB" field of /proc/<pid>/status in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	v := procField(fmt.Sprintf("/proc/%d/status", pid), field)
	kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s of process %d: %q: %w", field, pid, v, errors.Join(err, errNoProc))
	}
	return kb << 10, nil
}

var errNoProc = errors.New("no /proc status (Linux only)")
