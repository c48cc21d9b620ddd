package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// A store filled from scratch (a recovery replaying its whole changelog
// into an empty store) need not sync each transaction: until it holds the
// whole log it is worth nothing after a crash, and can be rebuilt again.
// StartRebuild marks it so, in a file beside it that OpenBolt refuses
// while it exists, before the first unsynced transaction; EndRebuild syncs
// the file and removes the mark. Whatever a crash leaves in between is
// rebuilt, never trusted: without the sync, bbolt may leave a file whose
// meta page names pages that never reached the disk, and offsets it does
// not hold.

// rebuildSuffix names the mark of a store being rebuilt: the store's path
// with this suffix.
const rebuildSuffix = ".rebuilding"

// errRebuilding is the cause OpenBolt gives (wrapped in ErrCorrupt) for a
// store whose rebuild was interrupted.
var errRebuilding = errors.New("its rebuild was interrupted (it was written without syncs, and is rebuilt)")

// checkRebuildMark returns an error wrapping ErrCorrupt when the store at
// path is marked as being rebuilt.
func checkRebuildMark(path string) error {
	_, err := os.Lstat(path + rebuildSuffix)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, path, errRebuilding)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("store: open %s: %w", path, err)
	}
}

// StartRebuild marks the store as being rebuilt and stops syncing its
// transactions, until EndRebuild: a crash meanwhile leaves a store that
// OpenBolt refuses with ErrCorrupt. The mark is on disk (its directory
// synced) before it returns. Call it on an empty store, with no Apply
// running; a second call does nothing.
func (b *Bolt) StartRebuild() error {
	if b.rebuilding {
		return nil
	}
	mark := b.path + rebuildSuffix
	f, err := os.OpenFile(mark, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: mark %s as being rebuilt: %w", b.path, err)
	}
	err = errors.Join(f.Sync(), f.Close())
	if err == nil {
		err = syncDir(filepath.Dir(b.path))
	}
	if err != nil {
		return fmt.Errorf("store: mark %s as being rebuilt: %w", b.path, err)
	}
	b.rebuilding = true
	b.db.NoSync = true
	return nil
}

// EndRebuild syncs the store's file, removes the mark of StartRebuild and
// syncs every transaction again (unless the store was opened with
// Options.NoSync). Without a rebuild it does nothing. Call it with no Apply
// running. The mark's removal is not synced: a crash that loses it leaves
// a synced store marked, rebuilt once more when it is next opened, which
// is slower but loses nothing.
func (b *Bolt) EndRebuild() error {
	if !b.rebuilding {
		return nil
	}
	if err := b.db.Sync(); err != nil {
		return fmt.Errorf("store: sync %s after its rebuild: %w", b.path, err)
	}
	b.db.NoSync = b.noSync
	if err := os.Remove(b.path + rebuildSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: unmark %s after its rebuild: %w", b.path, err)
	}
	b.rebuilding = false
	return nil
}

// syncDir syncs directory dir, making the entries created or removed in
// it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
