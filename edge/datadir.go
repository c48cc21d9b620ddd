package edge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edgetables/edgetables/store"
)

// ErrDataDirLocked is wrapped by the error of Node.Run when another node,
// in another process or in this one, holds the data directory: two nodes on
// one directory would write the same JetStream files and stores and damage
// them. The error names the directory and, when it can, the holder's pid.
var ErrDataDirLocked = errors.New("data directory in use")

// lockFileName is the file in the data directory whose lock a node holds
// while it runs; it contains the holder's pid.
const lockFileName = "LOCK"

// lockDataDir creates dir (mode 0750) if needed and takes the exclusive
// lock of dir/LOCK without waiting, before anything else in dir is touched.
// release closes the file, which releases the lock; so does the end of the
// process, a kill -9 too, so a crashed node restarts without cleanup.
// The file stays behind, holding the last holder's pid.
func lockDataDir(dir string) (release func(), err error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	ok, err := store.TryLock(f)
	if err != nil || !ok {
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("data directory: lock %s: %w", path, err)
		}
		holder := ""
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = fmt.Sprintf(" by pid %d", pid)
			}
		}
		return nil, fmt.Errorf("%w: %s is held%s (lock file %s): stop that node, or give this one another data directory",
			ErrDataDirLocked, dir, holder, lockFileName)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("data directory: write %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}
