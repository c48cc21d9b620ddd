//go:build !(linux || darwin || freebsd)

package edge

import "errors"

// diskFree is not implemented here: MaxStore defaults to 8 GiB.
func diskFree(string) (uint64, error) {
	return 0, errors.New("free disk space: not implemented on this system")
}
