//go:build !linux

package edge

import "errors"

// diskSpace is not implemented off Linux: the disk metrics are absent.
func diskSpace(string) (free, size uint64, err error) {
	return 0, 0, errors.New("disk space: not implemented on this system")
}
