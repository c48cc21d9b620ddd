package store_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgetables/edgetables/store"
)

func openDir(t testing.TB, d *store.Dir, p int) store.Store {
	t.Helper()
	s, err := d.Open(p)
	if err != nil {
		t.Fatalf("Open(%d): %v", p, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestDirPathAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // created by Open
	d := store.NewDir(dir, nil)
	if got, want := d.Path(7), filepath.Join(dir, "partition-0007.db"); got != want {
		t.Fatalf("Path(7) = %q, want %q", got, want)
	}
	s := openDir(t, d, 7)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("directory: %v, %v", fi.Mode(), err)
	}
	want := store.Offsets{Changelog: 42, Source: 17, Epoch: "e1"}
	err := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "k", "v"), {Table: "t", Value: []byte("empty key")}},
		Offsets: want})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, d, 7)
	wantGet(t, s, "t", []byte("k"), []byte("v"))
	wantGet(t, s, "t", nil, []byte("empty key"))
	if o, err := s.Offsets(); err != nil || o != want {
		t.Fatalf("Offsets after reopen = %+v, %v, want %+v", o, err, want)
	}
	if _, err := d.Open(-1); err == nil {
		t.Fatal("Open(-1): no error")
	}
}

func TestDestroy(t *testing.T) {
	d := store.NewDir(t.TempDir(), nil)
	if err := d.Destroy(3); err != nil { // absent
		t.Fatal(err)
	}
	s := openDir(t, d, 3)
	err := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "k", "v")}, Offsets: store.Offsets{Changelog: 5}})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := d.Destroy(3); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, d, 3)
	wantCount(t, s, "t", 0)
	if o, err := s.Offsets(); err != nil || o != (store.Offsets{}) {
		t.Fatalf("Offsets after Destroy = %+v, %v", o, err)
	}
}

// wantCorrupt checks that opening path fails with ErrCorrupt.
func wantCorrupt(t *testing.T, path string, opts *store.Options) {
	t.Helper()
	s, err := store.OpenBolt(path, opts)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open: no error, want ErrCorrupt")
	}
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	t.Logf("Open: %v", err)
}

// writeDB writes a store of a few MB at path and returns the size of its
// file.
func writeDB(t *testing.T, path string) int64 {
	t.Helper()
	s, err := store.OpenBolt(path, &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for b := 0; b < 2; b++ {
		ms := make([]store.Mutation, 5000)
		for i := range ms {
			ms[i] = store.Mutation{Table: fmt.Sprint("t", i%3), Key: fmt.Appendf(nil, "%016x", rng.Uint64()),
				Value: bytes.Repeat([]byte{byte(i)}, 100+i%300)}
		}
		if err := s.Apply(store.Batch{Mutations: ms, Offsets: store.Offsets{Changelog: uint64(b + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestCorruptFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) { write(t, path, garbage) }},
		{"short", func(t *testing.T, path string) { write(t, path, []byte("not a database")) }},
		{"truncated", func(t *testing.T, path string) { // half its data: the file is longer (bbolt grows it ahead)
			writeDB(t, path)
			if err := os.Truncate(path, dataSize(t, path)/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"last byte cut", func(t *testing.T, path string) { // caught by the size check
			writeDB(t, path)
			if err := os.Truncate(path, dataSize(t, path)-1); err != nil {
				t.Fatal(err)
			}
		}},
		{"zeroed root page", func(t *testing.T, path string) {
			writeDB(t, path)
			overwrite(t, path, rootPage(t, path, "t1")*4096, make([]byte, 4096))
		}},
		{"garbage root page", func(t *testing.T, path string) {
			writeDB(t, path)
			overwrite(t, path, rootPage(t, path, "t2")*4096, garbage[:4096])
		}},
		{"garbage child pages", func(t *testing.T, path string) {
			writeDB(t, path)
			for _, id := range childPages(t, path, "t0")[1:3] {
				overwrite(t, path, id*4096, garbage[id%8*4096:][:4096])
			}
		}},
		{"keys out of order", func(t *testing.T, path string) { // only tx.Check sees it
			writeDB(t, path)
			id := childPages(t, path, "t0")[0]
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for data[id*4096+8] == 0x01 { // descend branch pages to a leaf
				id = int64(binary.LittleEndian.Uint64(data[id*4096+16+8:]))
			}
			// The first leaf element: flags u32, pos u32 (from the element).
			pos := id*4096 + 16 + int64(binary.LittleEndian.Uint32(data[id*4096+16+4:]))
			overwrite(t, path, pos, []byte{0xff}) // key 0x00... becomes 0xff...
		}},
		{"foreign database", func(t *testing.T, path string) { // bucket meta is missing
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("tables")); return err })
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"both meta pages", func(t *testing.T, path string) {
			writeDB(t, path)
			overwrite(t, path, 0, garbage[:2*4096])
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			c.damage(t, path)
			wantCorrupt(t, path, nil)
			d := store.NewDir(filepath.Dir(path), nil) // the caller's way out
			if err := os.Rename(path, d.Path(0)); err != nil {
				t.Fatal(err)
			}
			if err := d.Destroy(0); err != nil {
				t.Fatal(err)
			}
			wantCount(t, openDir(t, d, 0), "t0", 0)
		})
	}
	t.Run("last byte cut, SkipVerify", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.db")
		writeDB(t, path)
		if err := os.Truncate(path, dataSize(t, path)-1); err != nil {
			t.Fatal(err)
		}
		wantCorrupt(t, path, &store.Options{SkipVerify: true})
	})
}

// dataSize returns the size of the pages in use (below the high-water mark),
// which may be much less than the size of the file.
func dataSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	_ = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size
}

// rootPage returns the id of the root page of table's bucket.
func rootPage(t *testing.T, path, table string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id int64
	_ = db.View(func(tx *bolt.Tx) error {
		id = int64(tx.Bucket([]byte("tables")).Bucket([]byte(table)).RootPage())
		return nil
	})
	if id == 0 {
		t.Fatalf("table %s is inline", table)
	}
	return id
}

// childPages returns the ids of the pages referenced by table's root page, read from the file (page header: id u64, flags u16, count u16,
// overflow u32; branch elements: pos u32, ksize u32, pgid u64).
func childPages(t *testing.T, path, table string) []int64 {
	t.Helper()
	root := rootPage(t, path, table)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := data[root*4096:]
	if p[8] != 0x01 { // branchPageFlag
		t.Fatalf("root page %d of %s is not a branch page", root, table)
	}
	var ids []int64
	for i := 0; i < int(binary.LittleEndian.Uint16(p[10:])); i++ {
		ids = append(ids, int64(binary.LittleEndian.Uint64(p[16+16*i+8:])))
	}
	return ids
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func overwrite(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	first, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	start := time.Now()
	second, err := store.OpenBolt(path, &store.Options{OpenTimeout: 200 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		_ = second.Close()
		t.Fatal("second Open of a locked file: no error")
	}
	if !errors.Is(err, store.ErrLocked) || errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("second Open: %v, want ErrLocked and not ErrCorrupt", err)
	}
	if took > 2*time.Second {
		t.Fatalf("second Open took %v with a 200ms timeout", took)
	}
	_ = first.Close() // releases the lock
	second, err = store.OpenBolt(path, &store.Options{OpenTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	_ = second.Close()
}

func TestOpenOSError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing dir", "p.db")
	_, err := store.OpenBolt(path, nil)
	if err == nil || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrLocked) {
		t.Fatalf("Open in a missing directory: %v, want a plain OS error", err)
	}
}

// TestApplyAtomic forces bbolt to fail in the middle of a transaction (a key
// longer than bbolt accepts, sorted after a valid write) and checks that
// neither data nor offsets changed.
func TestApplyAtomic(t *testing.T) {
	s := implementations["bolt"](t)
	before := store.Offsets{Changelog: 1, Epoch: "e"}
	if err := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "old", "1")}, Offsets: before}); err != nil {
		t.Fatal(err)
	}
	long := "b" + strings.Repeat("x", bolt.MaxKeySize)
	err := s.Apply(store.Batch{
		Mutations: []store.Mutation{put("t", long, "v"), put("t", "a", "new"), del("t", "old"), put("u", "c", "new")},
		Offsets:   store.Offsets{Changelog: 2, Epoch: "e"},
	})
	if err == nil {
		t.Fatal("Apply of a too long key: no error")
	}
	wantGet(t, s, "t", []byte("a"), nil)
	wantGet(t, s, "t", []byte("old"), []byte("1"))
	wantCount(t, s, "u", 0)
	if o, err := s.Offsets(); err != nil || o != before {
		t.Fatalf("Offsets = %+v, %v, want %+v", o, err, before)
	}
}

func TestSkipVerifyAndNoSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	writeDB(t, path)
	s, err := store.OpenBolt(path, &store.Options{SkipVerify: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if o, err := s.Offsets(); err != nil || o.Changelog != 2 {
		t.Fatalf("Offsets = %+v, %v", o, err)
	}
}

func BenchmarkBoltApplyRandom10k(b *testing.B) {
	s, err := store.OpenBolt(filepath.Join(b.TempDir(), "p.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	value := bytes.Repeat([]byte("v"), 100)
	ms := make([]store.Mutation, 10_000)
	b.SetBytes(int64(len(ms) * (16 + len(value))))
	for i := 0; b.Loop(); i++ {
		for j := range ms {
			key := make([]byte, 16)
			for k := range key {
				key[k] = byte(rng.Uint32())
			}
			ms[j] = store.Mutation{Table: "t", Key: key, Value: value}
		}
		if err := s.Apply(store.Batch{Mutations: ms, Offsets: store.Offsets{Changelog: uint64(i + 1)}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBoltGet(b *testing.B) {
	s, err := store.OpenBolt(filepath.Join(b.TempDir(), "p.db"), &store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 100_000
	ms := make([]store.Mutation, n)
	for i := range ms {
		ms[i] = store.Mutation{Table: "t", Key: fmt.Appendf(nil, "key-%012d", i), Value: bytes.Repeat([]byte("v"), 100)}
	}
	if err := s.Apply(store.Batch{Mutations: ms}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for b.Loop() {
		if _, found, err := s.Get("t", ms[rng.IntN(n)].Key); !found || err != nil {
			b.Fatal(found, err)
		}
	}
}
