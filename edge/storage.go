package edge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/edgetables/edgetables/jetstream"
)

// Storage limits of a node's embedded server (see Config.MaxStore).
const (
	// MinMaxStore is the smallest JetStream storage limit a node takes.
	MinMaxStore = 8 << 20 // 8 MiB
	// DefaultSourceMaxBytes is the source stream's largest default size;
	// it is a quarter of MaxStore when that is smaller.
	DefaultSourceMaxBytes = 1 << 30 // 1 GiB
)

// storageCheckEvery is how often a node checks its embedded server's
// storage, and storageLogEvery how often it repeats the error while the
// storage stays full or broken.
const (
	storageCheckEvery = time.Second
	storageLogEvery   = 5 * time.Minute
)

// resolveStorage sets the storage limits left at zero and checks them:
// MaxStore (embedded server only) defaults to half of what the data
// directory's filesystem offers (its free space plus what JetStream holds
// there already), the other half being for the table stores, which hold
// about as much as the changelogs, and the system; SourceMaxBytes to a
// quarter of MaxStore, at most 1 GiB; the dead-letter stream to an eighth,
// at most 256 MiB. The source stream may take at most half of MaxStore:
// the changelogs must find room when the source is full, or no commit, and
// so no trim of the source, could ever free space again.
func (c *Config) resolveStorage() error {
	if len(c.NATSURLs) > 0 {
		switch {
		case c.MaxStore != 0:
			return errors.New("--max-store: only for the embedded server (not with --nats-url)")
		case c.MaxMemory != 0:
			return errors.New("--max-memory: only for the embedded server (not with --nats-url)")
		}
		if c.SourceMaxBytes == 0 {
			c.SourceMaxBytes = DefaultSourceMaxBytes
		}
		return nil
	}
	switch {
	case c.MaxMemory < 0 || c.MaxMemory > 0 && c.MaxMemory < 1<<20:
		return fmt.Errorf("--max-memory %s: want at least 1 MiB (0: %s)", formatBytes(c.MaxMemory), formatBytes(jetstream.DefaultMaxMemory))
	case c.MaxMemory == 0:
		c.MaxMemory = jetstream.DefaultMaxMemory
	}
	offered, err := diskOffered(c.DataDir)
	switch {
	case c.MaxStore < 0:
		return fmt.Errorf("--max-store %d: must not be negative (0: half of the data directory's free disk)", c.MaxStore)
	case c.MaxStore == 0 && err != nil:
		c.MaxStore = jetstream.DefaultMaxStore
		c.Logger.Warn("free disk space unknown; --max-store defaults to 8 GiB", "data_dir", c.DataDir, "err", err)
	case c.MaxStore == 0:
		c.MaxStore = int64(offered / 2)
		if c.MaxStore < MinMaxStore {
			return fmt.Errorf("--max-store: the data directory %s has %s of free disk (JetStream data included), half of it is below the %s minimum: free space, or set --max-store",
				c.DataDir, formatBytes(int64(offered)), formatBytes(MinMaxStore))
		}
	case c.MaxStore < MinMaxStore:
		return fmt.Errorf("--max-store %s: want at least %s", formatBytes(c.MaxStore), formatBytes(MinMaxStore))
	case err == nil && uint64(c.MaxStore) > offered:
		c.Logger.Warn("--max-store is more than the data directory's free disk: the disk may fill before JetStream's limit, and a full disk needs a restart of the node",
			"max_store", formatBytes(c.MaxStore), "free", formatBytes(int64(offered)), "data_dir", c.DataDir)
	}
	switch {
	case c.SourceMaxBytes == 0:
		c.SourceMaxBytes = min(DefaultSourceMaxBytes, c.MaxStore/4)
	case c.SourceMaxBytes > c.MaxStore/2:
		return fmt.Errorf("--source-max-bytes %s: does not fit --max-store %s: the source stream may take at most half of it (%s), the rest holds the changelogs, dead letters and group state",
			formatBytes(c.SourceMaxBytes), formatBytes(c.MaxStore), formatBytes(c.MaxStore/2))
	}
	c.deadLetterBytes = min(jetstream.DeadLetterMaxBytes, c.MaxStore/8)
	return nil
}

// diskOffered returns the free space of the filesystem of dir (or of its
// nearest existing parent) plus the bytes already under dir/jetstream: what
// JetStream may use there.
func diskOffered(dir string) (uint64, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	for {
		if _, err := os.Stat(d); err == nil {
			break
		}
		parent := filepath.Dir(d)
		if parent == d {
			return 0, fmt.Errorf("no existing directory above %s", dir)
		}
		d = parent
	}
	free, _, err := diskSpace(d)
	if err != nil {
		return 0, err
	}
	var used uint64
	_ = filepath.WalkDir(filepath.Join(dir, "jetstream"), func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				used += uint64(info.Size())
			}
		}
		return nil
	})
	return free + used, nil
}

// formatBytes formats n in binary units.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// storageWatch watches an embedded server's storage and says, in the
// node's readiness and its log, when writes fail for want of space.
type storageWatch struct {
	srv     *jetstream.Server
	dataDir string
	log     *slog.Logger

	// restart, set by the node, restarts it (errStorageRestart).
	restart func()

	mu      sync.Mutex
	reasons []string // why writes fail; nil while they work
}

// errStorageRestart ends a life of the node whose JetStream write errors
// outlived a full disk (see storageWatch.run); Run starts it again.
var errStorageRestart = errors.New("edgetables: JetStream write errors after a full disk: restart")

// restartFreeBytes is the free space on the data directory's filesystem
// after which a node whose JetStream has write errors restarts.
const restartFreeBytes = 8 << 20

// run checks the storage every storageCheckEvery until ctx ends. It logs
// one error when writes start failing (again every storageLogEvery while
// they do) and one line when they work again.
func (w *storageWatch) run(ctx context.Context) {
	tick := time.NewTicker(storageCheckEvery)
	defer tick.Stop()
	var since, logged time.Time
	for {
		st, err := w.srv.Storage()
		if err != nil {
			if ctx.Err() == nil {
				w.log.Debug("storage state unknown", "err", err)
			}
		} else {
			reasons := w.check(st)
			w.mu.Lock()
			w.reasons = reasons
			w.mu.Unlock()
			now := time.Now()
			switch {
			case reasons != nil && since.IsZero():
				since, logged = now, now
				w.log.Error("JetStream storage: writes fail; publishers get errors, reads are served", "reason", reasons[0],
					"used", formatBytes(int64(st.Used)), "max_store", formatBytes(int64(st.Max)), "data_dir", w.dataDir)
			case reasons != nil && now.Sub(logged) >= storageLogEvery:
				logged = now
				w.log.Error("JetStream storage: writes still fail", "for", now.Sub(since).Round(time.Second), "reason", reasons[0],
					"used", formatBytes(int64(st.Used)), "max_store", formatBytes(int64(st.Max)))
			case len(st.WriteErrors) > 0 && w.restart != nil && w.hasRoom():
				w.log.Error("JetStream storage: the disk has room again; restarting the node to clear the server's write errors",
					"reason", reasons[0], "data_dir", w.dataDir)
				w.restart()
				return
			case reasons == nil && !since.IsZero():
				w.log.Info("JetStream storage: writes work again", "after", time.Since(since).Round(time.Second),
					"used", formatBytes(int64(st.Used)), "max_store", formatBytes(int64(st.Max)))
				since = time.Time{}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// hasRoom reports whether the data directory's filesystem has
// restartFreeBytes free.
func (w *storageWatch) hasRoom() bool {
	free, _, err := diskSpace(w.dataDir)
	return err == nil && free >= restartFreeBytes
}

// check returns why writes fail in st (nil: they work).
func (w *storageWatch) check(st jetstream.StorageState) []string {
	var reasons []string
	for _, e := range st.WriteErrors {
		reasons = append(reasons, fmt.Sprintf("JetStream write error (disk full or failing): %s; free space on the filesystem of %s: the node restarts by itself once it has room (the server keeps a stream's write error until it restarts)", e, w.dataDir))
	}
	if st.Full() {
		reasons = append(reasons, fmt.Sprintf("JetStream storage full: %s used of --max-store %s; publishes and commits fail until space is freed (committed events leave the source stream as they are trimmed; else raise --max-store or remove data)",
			formatBytes(int64(st.Used)), formatBytes(int64(st.Max))))
	}
	return reasons
}

// Reasons returns why writes fail (nil while they work).
func (w *storageWatch) Reasons() []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.reasons)
}
