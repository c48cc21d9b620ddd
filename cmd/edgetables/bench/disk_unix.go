//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

// freeDisk returns the bytes free to an unprivileged user on the file
// system holding dir.
func freeDisk(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
