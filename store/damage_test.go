package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgetables/edgetables/store"
)

// The two commits of writeTwoCommits: a new bbolt file holds transactions
// 0 and 1 in its meta pages, Open's creation of the buckets is 2, commit A
// is 3 (meta page 1) and commit B is 4 (meta page 0).
var (
	commitA = store.Offsets{Changelog: 1, Source: 10, Epoch: "e"}
	commitB = store.Offsets{Changelog: 2, Source: 20, Epoch: "e"}
)

const damageKeys = 1000 // enough for branch pages in table t

// writeTwoCommits writes a store at path in two commits: A puts damageKeys
// keys with values "a-<i>", B overwrites them with "b-<i>" and adds a
// table u of one key (an inline bucket). It returns the file's content.
func writeTwoCommits(t testing.TB, path string) []byte {
	t.Helper()
	s, err := store.OpenBolt(path, &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prefix string
		offs   store.Offsets
	}{{"a", commitA}, {"b", commitB}} {
		ms := make([]store.Mutation, damageKeys)
		for i := range ms {
			ms[i] = put("t", fmt.Sprintf("key-%04d", i), fmt.Sprintf("%s-%d", c.prefix, i))
		}
		if c.prefix == "b" {
			ms = append(ms, put("u", "only", "inline"))
		}
		if err := s.Apply(store.Batch{Mutations: ms, Offsets: c.offs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// wantCommit checks that s holds exactly the state of commit A or B.
func wantCommit(t *testing.T, s store.Store, want store.Offsets) {
	t.Helper()
	if o, err := s.Offsets(); err != nil || o != want {
		t.Fatalf("Offsets = %+v, %v, want %+v", o, err, want)
	}
	prefix, inline := "a", 0
	if want == commitB {
		prefix, inline = "b", 1
	}
	for _, i := range []int{0, 1, damageKeys / 2, damageKeys - 1} {
		wantGet(t, s, "t", fmt.Appendf(nil, "key-%04d", i), fmt.Appendf(nil, "%s-%d", prefix, i))
	}
	wantCount(t, s, "t", damageKeys)
	wantCount(t, s, "u", inline)
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestOpenDamaged damages a store in the ways a disk or a stray write can
// and checks that Open returns ErrCorrupt, releasing the file's lock, or,
// where bbolt recovers by design (one meta page whose checksum fails: it
// reads the other, the commit before), a store that holds that commit
// exactly. It never panics.
func TestOpenDamaged(t *testing.T) {
	const (
		corrupt = iota
		asA
		asB
		empty
		corruptOrB // damage that may fall on a free page, which nothing reads
	)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		want   int
	}{
		{"100 random bytes at offset 0", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 0, randomBytes(1, 100))
		}, corrupt},
		{"100 random bytes at offset 4096", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 4096, randomBytes(2, 100))
		}, corrupt},
		{"meta page 0 header only", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 0, []byte{7}) // its id; the checksum holds
		}, corrupt},
		{"meta page 1 type only", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 4096+8, []byte{0x02}) // a leaf page's flags
		}, corrupt},
		{"meta page 0 content", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 16+40, randomBytes(3, 8)) // its high-water mark
		}, asA},
		{"meta page 1 content", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 4096+16+16, randomBytes(4, 8)) // its root page
		}, asB},
		{"both meta pages' content", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, 16+40, randomBytes(5, 8))
			overwrite(t, path, 4096+16+16, randomBytes(6, 8))
		}, corrupt},
		{"100 random bytes in the middle", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, dataSize(t, path)/2, randomBytes(7, 100))
		}, corruptOrB},
		{"a page of the table zeroed", func(t *testing.T, path string, _ int64) {
			overwrite(t, path, childPages(t, path, "t")[1]*4096, make([]byte, 4096))
		}, corrupt},
		{"truncated to half", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, dataSize(t, path)/2); err != nil {
				t.Fatal(err)
			}
		}, corrupt},
		{"truncated to one page", func(t *testing.T, path string, _ int64) {
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
		}, corrupt},
		{"truncated to nothing", func(t *testing.T, path string, _ int64) {
			if err := os.Truncate(path, 0); err != nil { // bbolt starts a new file
				t.Fatal(err)
			}
		}, empty},
		{"all zeros", func(t *testing.T, path string, size int64) {
			write(t, path, make([]byte, size))
		}, corrupt},
		{"random garbage", func(t *testing.T, path string, size int64) {
			write(t, path, randomBytes(8, int(size)))
		}, corrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			size := int64(len(writeTwoCommits(t, path)))
			c.damage(t, path, size)
			s, err := store.OpenBolt(path, nil)
			switch {
			case err != nil && (c.want == corrupt || c.want == corruptOrB):
				if !errors.Is(err, store.ErrCorrupt) {
					t.Fatalf("Open: %v, want ErrCorrupt", err)
				}
				t.Logf("Open: %v", err)
				// The lock is released: another Open gets the same answer at once.
				if s, err = store.OpenBolt(path, &store.Options{OpenTimeout: -1}); !errors.Is(err, store.ErrCorrupt) {
					t.Fatalf("second Open: %v, want ErrCorrupt", err)
				}
				return
			case err != nil:
				t.Fatalf("Open: %v, want a store", err)
			case c.want == corrupt:
				_ = s.Close()
				t.Fatal("Open: no error, want ErrCorrupt")
			}
			t.Cleanup(func() { _ = s.Close() })
			switch c.want {
			case asA:
				wantCommit(t, s, commitA)
			case asB, corruptOrB:
				wantCommit(t, s, commitB)
			case empty:
				wantCount(t, s, "t", 0)
				if o, err := s.Offsets(); err != nil || o != (store.Offsets{}) {
					t.Fatalf("Offsets = %+v, %v, want none", o, err)
				}
			}
			// The store takes writes, and a commit rewrites the meta pages.
			next := store.Offsets{Changelog: 3, Epoch: "e"}
			if err := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "new", "v")}, Offsets: next}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openBolt(t, path)
			wantGet(t, s, "t", []byte("new"), []byte("v"))
			if o, err := s.Offsets(); err != nil || o != next {
				t.Fatalf("Offsets after reopen = %+v, %v, want %+v", o, err, next)
			}
		})
	}
}

func openBolt(t testing.TB, path string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// FuzzOpenDamaged writes fuzz-chosen bytes at a fuzz-chosen offset of a
// valid store (and may cut the file), then opens it. Open must not panic,
// nor end the process from a goroutine of bbolt's: it returns a store
// whose methods work or return ErrCorrupt, or an error, and never holds the
// file's lock after an error. bbolt has no checksums on data pages, so a
// store that opens may hold damaged values: that is not checked.
func FuzzOpenDamaged(f *testing.F) {
	tmpl := writeSmall(f, filepath.Join(f.TempDir(), "tmpl.db"))
	f.Add(uint32(0), randomBytes(1, 100), uint32(0))
	f.Add(uint32(4096), randomBytes(2, 100), uint32(0))
	f.Add(uint32(16+40), []byte{1, 2, 3}, uint32(0))
	f.Add(uint32(2*4096), make([]byte, 4096), uint32(0))
	f.Add(uint32(3*4096+10), []byte{0xff, 0xff}, uint32(0))
	f.Add(uint32(len(tmpl)/2), randomBytes(3, 300), uint32(0))
	f.Add(uint32(0), []byte{}, uint32(len(tmpl)/2))
	f.Fuzz(func(t *testing.T, off uint32, data []byte, cut uint32) {
		path := filepath.Join(t.TempDir(), "p.db")
		file := bytes.Clone(tmpl)
		if cut > 0 && int(cut) < len(file) {
			file = file[:cut]
		}
		if len(data) > 64<<10 {
			data = data[:64<<10]
		}
		if at := int(off % uint32(len(tmpl)+4096)); at < len(file) {
			file = append(file[:at], append(data, file[min(at+len(data), len(file)):]...)...)
		}
		write(t, path, file)

		// NoSync: the fsyncs of Apply would make the fuzzer wait on the disk.
		s, err := store.OpenBolt(path, &store.Options{OpenTimeout: -1, NoSync: true})
		if err != nil {
			if errors.Is(err, store.ErrLocked) {
				t.Fatalf("Open: %v", err)
			}
			if s, err := store.OpenBolt(path, &store.Options{OpenTimeout: -1}); errors.Is(err, store.ErrLocked) {
				t.Fatalf("the lock is kept after a failed Open: %v", err)
			} else if err == nil {
				_ = s.Close()
				t.Fatal("a second Open succeeds where the first failed")
			}
			return
		}
		defer s.Close()
		ok := func(what string, err error) {
			if err != nil && !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("%s: %v, want nil or ErrCorrupt", what, err)
			}
		}
		_, err = s.Offsets()
		ok("Offsets", err)
		for _, table := range []string{"t", "u", "none"} {
			_, _, err = s.Get(table, []byte("key-0042"))
			ok("Get", err)
			ok("Scan", s.Scan(table, nil, nil, func(_, _ []byte) bool { return true }))
			_, err = s.Count(table)
			ok("Count", err)
		}
		ok("Apply", s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "key-0042", "x"), del("t", "key-0001")},
			Offsets: store.Offsets{Changelog: 9}}))
		ok("Close", s.Close())
	})
}

// writeSmall writes a store of a few pages at path: a table t over two
// levels of pages and a table u of one key (an inline bucket). It returns
// the file's content.
func writeSmall(t testing.TB, path string) []byte {
	t.Helper()
	s, err := store.OpenBolt(path, &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ms := []store.Mutation{put("u", "only", "inline")}
	for i := range 300 {
		ms = append(ms, put("t", fmt.Sprintf("key-%04d", i), fmt.Sprint("value-", i)))
	}
	if err := s.Apply(store.Batch{Mutations: ms, Offsets: store.Offsets{Changelog: 1, Epoch: "e"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
