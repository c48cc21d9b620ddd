//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package store

import (
	"errors"
	"os"
	"syscall"
)

// TryLock takes an exclusive flock on f without waiting; ok is false when
// another holder (another open file description, in any process) has it.
// The kernel releases it when f is closed or the process exits, kill -9
// included. A store file's own lock is this one: bbolt takes the same
// lock on the same file description afterwards, which then succeeds at
// once; edge locks the data directory with it.
func TryLock(f *os.File) (ok bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
