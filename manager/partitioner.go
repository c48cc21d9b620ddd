package manager

import "hash/fnv"

// PartitionOf returns the partition of key among n partitions: the FNV-1a
// 32-bit hash of the key modulo n. It is the hash of NATS subject mapping's
// partition() function, so a stream partitioned by the server on a subject
// token agrees with tables keyed by that token.
func PartitionOf(key []byte, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(n))
}
