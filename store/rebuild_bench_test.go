package store_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/edgetables/edgetables/store"
)

// BenchmarkBoltRebuild fills a new store with 12,500 keys (a partition of
// the recovery bench's 100,000 keys over 8 partitions) in batches, as the
// replay of a rebuilt store does: open, the batches, close.
func BenchmarkBoltRebuild(b *testing.B) {
	const keys = 12_500
	value := []byte(`{"seq":123456,"payload":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	ms := make([]store.Mutation, keys)
	for i := range ms {
		ms[i] = store.Mutation{Table: "latest", Key: fmt.Appendf(nil, "k%d", (i*7919)%100_000), Value: value}
	}
	for _, batch := range []int{10_000, 2_500} {
		for _, noSync := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch=%d/nosync=%v", batch, noSync), func(b *testing.B) {
				dir := b.TempDir()
				for i := 0; b.Loop(); i++ {
					s, err := store.OpenBolt(filepath.Join(dir, fmt.Sprintf("p%d.db", i)), &store.Options{NoSync: noSync})
					if err != nil {
						b.Fatal(err)
					}
					for lo := 0; lo < keys; lo += batch {
						hi := min(lo+batch, keys)
						if err := s.Apply(store.Batch{Mutations: ms[lo:hi], Offsets: store.Offsets{Changelog: uint64(hi)}}); err != nil {
							b.Fatal(err)
						}
					}
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
