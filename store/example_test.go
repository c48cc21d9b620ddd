package store_test

import (
	"fmt"
	"log"
	"os"

	"github.com/edgetables/edgetables/store"
)

func ExampleDir() {
	dir, err := os.MkdirTemp("", "edgetables")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	stores := store.NewDir(dir, nil)
	s, err := stores.Open(3) // creates <dir>/partition-0003.db
	if err != nil {
		log.Fatal(err) // errors.Is(err, store.ErrCorrupt): Destroy(3), Open(3), rebuild
	}
	defer s.Close()

	err = s.Apply(store.Batch{
		Mutations: []store.Mutation{
			{Table: "counts", Key: []byte("apples"), Value: []byte("3")},
			{Table: "counts", Key: []byte("pears"), Value: []byte("5")},
		},
		Offsets: store.Offsets{Changelog: 2, Source: 10, Epoch: "epoch-1"},
	})
	if err != nil {
		log.Fatal(err)
	}

	v, found, err := s.Get("counts", []byte("apples"))
	if err != nil {
		log.Fatal(err)
	}
	offs, err := s.Offsets()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("apples=%s found=%v changelog=%d\n", v, found, offs.Changelog)
	// Output: apples=3 found=true changelog=2
}
