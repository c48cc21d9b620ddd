//go:build !unix

package bench

import "errors"

// freeDisk is not known on this system.
func freeDisk(string) (int64, error) {
	return 0, errors.New("free disk space: not known on this system")
}
