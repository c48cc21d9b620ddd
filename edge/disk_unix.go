//go:build linux || darwin || freebsd

package edge

import "syscall"

// diskFree returns the bytes of dir's filesystem available to this user.
func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
