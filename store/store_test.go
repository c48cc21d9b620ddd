package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgetables/edgetables/store"
)

// implementations opens a new, empty store of every implementation; the
// store is closed when the test ends.
var implementations = map[string]func(t testing.TB) store.Store{
	"bolt": func(t testing.TB) store.Store {
		b, err := store.OpenBolt(filepath.Join(t.TempDir(), "p.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	},
	"memory": func(t testing.TB) store.Store {
		m := store.NewMemory()
		t.Cleanup(func() { _ = m.Close() })
		return m
	},
}

func put(table, key, value string) store.Mutation {
	return store.Mutation{Table: table, Key: []byte(key), Value: []byte(value)}
}

func del(table, key string) store.Mutation {
	return store.Mutation{Table: table, Key: []byte(key), Delete: true}
}

func apply(t testing.TB, s store.Store, ms ...store.Mutation) {
	t.Helper()
	if err := s.Apply(store.Batch{Mutations: ms}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// wantGet checks that table/key holds want; want nil means absent.
func wantGet(t testing.TB, s store.Store, table string, key []byte, want []byte) {
	t.Helper()
	v, found, err := s.Get(table, key)
	switch {
	case err != nil:
		t.Fatalf("Get(%q, %q): %v", table, key, err)
	case want == nil && found:
		t.Fatalf("Get(%q, %q) = %q, want absent", table, key, v)
	case want != nil && (!found || !bytes.Equal(v, want)):
		t.Fatalf("Get(%q, %q) = %q, %v, want %q", table, key, v, found, want)
	}
}

// scan returns the keys Scan passes to fn, stopping after limit (0: all).
func scan(t testing.TB, s store.Store, table string, prefix, after []byte, limit int) []string {
	t.Helper()
	keys := []string{}
	err := s.Scan(table, prefix, after, func(k, v []byte) bool {
		keys = append(keys, string(k))
		return limit == 0 || len(keys) < limit
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return keys
}

func wantCount(t testing.TB, s store.Store, table string, want int) {
	t.Helper()
	if n, err := s.Count(table); err != nil || n != want {
		t.Fatalf("Count(%q) = %d, %v, want %d", table, n, err, want)
	}
}

// conformance is what every Store must do.
var conformance = []struct {
	name string
	test func(t *testing.T, s store.Store)
}{
	{"get", func(t *testing.T, s store.Store) {
		wantGet(t, s, "t", []byte("k"), nil) // no table yet
		apply(t, s, put("t", "k", "v"), put("t", "empty", ""))
		wantGet(t, s, "t", []byte("k"), []byte("v"))
		wantGet(t, s, "t", []byte("k2"), nil)
		wantGet(t, s, "t", []byte("empty"), []byte{})
		wantGet(t, s, "other", []byte("k"), nil)
		wantGet(t, s, "", []byte("k"), nil)
		v, _, _ := s.Get("t", []byte("k"))
		v[0] = 'X' // the caller owns it
		wantGet(t, s, "t", []byte("k"), []byte("v"))
	}},
	{"empty key", func(t *testing.T, s store.Store) {
		apply(t, s, store.Mutation{Table: "t", Key: []byte{}, Value: []byte("e")}, put("t", "a", "1"))
		wantGet(t, s, "t", []byte{}, []byte("e"))
		wantGet(t, s, "t", nil, []byte("e")) // nil is the empty key too
		if got := scan(t, s, "t", nil, nil, 0); fmt.Sprint(got) != "[ a]" {
			t.Fatalf("Scan = %q, want the empty key first", got)
		}
		wantCount(t, s, "t", 2)
		apply(t, s, store.Mutation{Table: "t", Key: nil, Delete: true})
		wantGet(t, s, "t", []byte{}, nil)
		wantCount(t, s, "t", 1)
	}},
	{"binary keys", func(t *testing.T, s store.Store) {
		keys := [][]byte{{0xff}, {0}, {0, 0}, {1, 0}, {0, 0xff}, {0x7f}, {0x80}}
		for i, k := range keys {
			apply(t, s, store.Mutation{Table: "t", Key: k, Value: []byte{byte(i)}})
		}
		for i, k := range keys {
			wantGet(t, s, "t", k, []byte{byte(i)})
		}
		got := scan(t, s, "t", nil, nil, 0)
		want := []string{"\x00", "\x00\x00", "\x00\xff", "\x01\x00", "\x7f", "\x80", "\xff"}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("Scan = %q, want %q", got, want)
		}
		if got := scan(t, s, "t", []byte{0}, nil, 0); len(got) != 3 {
			t.Fatalf("Scan(prefix 0x00) = %q, want 3 keys", got)
		}
	}},
	{"same key in slice order", func(t *testing.T, s store.Store) {
		apply(t, s, put("t", "k", "1"), put("u", "k", "u"), put("t", "k", "2"), del("t", "k"), put("t", "k", "3"),
			put("t", "gone", "x"), del("t", "gone"), put("t", "a", "a"))
		wantGet(t, s, "t", []byte("k"), []byte("3"))
		wantGet(t, s, "t", []byte("gone"), nil)
		wantGet(t, s, "u", []byte("k"), []byte("u"))
		wantCount(t, s, "t", 2)
	}},
	{"delete", func(t *testing.T, s store.Store) {
		apply(t, s, del("t", "absent"), del("no table", "k")) // fine
		wantCount(t, s, "no table", 0)
		apply(t, s, put("t", "a", "1"), put("t", "b", "2"))
		apply(t, s, del("t", "a"), del("t", "a"))
		wantGet(t, s, "t", []byte("a"), nil)
		wantGet(t, s, "t", []byte("b"), []byte("2"))
		wantCount(t, s, "t", 1)
	}},
	{"scan", func(t *testing.T, s store.Store) {
		apply(t, s, put("t", "b", "B"), put("t", "a", "A"), put("t", "abc", "ABC"), put("t", "ab", "AB"),
			put("t", "ba", "BA"), put("t", "c", "C"), put("u", "aa", "other table"))
		for _, c := range []struct {
			prefix, after []byte
			limit         int
			want          string
		}{
			{nil, nil, 0, "[a ab abc b ba c]"},
			{[]byte("a"), nil, 0, "[a ab abc]"},
			{[]byte("a"), []byte("a"), 0, "[ab abc]"},
			{[]byte("a"), []byte("aa"), 0, "[ab abc]"}, // after absent
			{[]byte("b"), []byte("a"), 0, "[b ba]"},    // after below prefix
			{[]byte("a"), []byte("b"), 0, "[]"},        // after above prefix
			{nil, []byte("ab"), 0, "[abc b ba c]"},     // no prefix
			{nil, []byte{}, 0, "[a ab abc b ba c]"},    // after the empty key
			{[]byte("abcd"), nil, 0, "[]"},             // no match
			{nil, nil, 2, "[a ab]"},                    // fn returns false
			{[]byte("b"), []byte("b"), 1, "[ba]"},      // both
			{[]byte{}, nil, 0, "[a ab abc b ba c]"},    // empty prefix
			{[]byte("c"), []byte("c\x00"), 0, "[]"},    // after past the last key
			{[]byte("zz"), nil, 0, "[]"},               // prefix past the last key
			{nil, []byte("\xff\xff"), 0, "[]"},         // after past everything
			{[]byte("ab"), []byte("abc\x00\x00\x00"), 0, "[]"},
		} {
			if got := fmt.Sprint(scan(t, s, "t", c.prefix, c.after, c.limit)); got != c.want {
				t.Errorf("Scan(prefix %q, after %q, limit %d) = %s, want %s", c.prefix, c.after, c.limit, got, c.want)
			}
		}
		if got := scan(t, s, "none", nil, nil, 0); len(got) != 0 {
			t.Errorf("Scan of a missing table = %q", got)
		}
		var vals []string
		_ = s.Scan("t", []byte("b"), nil, func(k, v []byte) bool { vals = append(vals, string(v)); return true })
		if fmt.Sprint(vals) != "[B BA]" {
			t.Errorf("Scan values = %q", vals)
		}
	}},
	{"count", func(t *testing.T, s store.Store) {
		wantCount(t, s, "t", 0)
		apply(t, s, put("t", "a", "1"), put("t", "b", "2"), put("t", "c", "3"), put("u", "a", "1"))
		apply(t, s, put("t", "a", "overwritten"), put("u", "b", "2"), del("u", "a"))
		wantCount(t, s, "t", 3)
		wantCount(t, s, "u", 1)
		ms := make([]store.Mutation, 5000) // more than one page
		for i := range ms {
			ms[i] = put("big", fmt.Sprintf("key-%05d", i), "some value of moderate length")
		}
		apply(t, s, ms...)
		wantCount(t, s, "big", 5000)
		wantCount(t, s, "t", 3)
	}},
	{"offsets", func(t *testing.T, s store.Store) {
		if o, err := s.Offsets(); err != nil || o != (store.Offsets{}) {
			t.Fatalf("Offsets of a new store = %+v, %v", o, err)
		}
		for _, want := range []store.Offsets{
			{Changelog: 1, Source: 7, Epoch: "2024-01-01T00:00:00Z", SourceEpoch: "2024-02-01T00:00:00Z"},
			{Changelog: math.MaxUint64, Source: math.MaxUint64 - 1, Epoch: "\x00binary\xff"},
			{Changelog: 3},
		} {
			if err := s.Apply(store.Batch{Offsets: want}); err != nil {
				t.Fatal(err)
			}
			if o, err := s.Offsets(); err != nil || o != want {
				t.Fatalf("Offsets = %+v, %v, want %+v", o, err, want)
			}
		}
	}},
	{"empty table name", func(t *testing.T, s store.Store) {
		apply(t, s, put("t", "a", "1"))
		err := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "b", "2"), put("", "x", "y")},
			Offsets: store.Offsets{Changelog: 9}})
		if err == nil {
			t.Fatal("Apply with an empty table name: no error")
		}
		wantGet(t, s, "t", []byte("b"), nil)
		if o, _ := s.Offsets(); o.Changelog != 0 {
			t.Fatalf("offsets written by a failed Apply: %+v", o)
		}
	}},
	{"closed", func(t *testing.T, s store.Store) {
		apply(t, s, put("t", "a", "1"))
		for i := 0; i < 2; i++ {
			if err := s.Close(); err != nil {
				t.Fatalf("Close #%d: %v", i+1, err)
			}
		}
		_, _, err1 := s.Get("t", []byte("a"))
		err2 := s.Scan("t", nil, nil, func(k, v []byte) bool { return true })
		_, err3 := s.Count("t")
		_, err4 := s.Offsets()
		err5 := s.Apply(store.Batch{Mutations: []store.Mutation{put("t", "b", "2")}})
		for i, err := range []error{err1, err2, err3, err4, err5} {
			if !errors.Is(err, store.ErrClosed) {
				t.Errorf("method %d after Close: %v, want ErrClosed", i+1, err)
			}
		}
	}},
	{"scan fn panics", func(t *testing.T, s store.Store) {
		apply(t, s, put("t", "a", "1"))
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic of fn", r)
			}
			wantGet(t, s, "t", []byte("a"), []byte("1")) // still usable
		}()
		_ = s.Scan("t", nil, nil, func(k, v []byte) bool { panic("boom") })
	}},
}

func TestConformance(t *testing.T) {
	for name, open := range implementations {
		t.Run(name, func(t *testing.T) {
			for _, c := range conformance {
				t.Run(c.name, func(t *testing.T) { c.test(t, open(t)) })
			}
		})
	}
}

// TestConcurrent runs one writer and several readers. Batch i writes keys
// x/i and y/i and Offsets.Changelog = i. Invariants the readers check:
//   - one Scan (one snapshot) sees as many x keys as y keys, and the x keys
//     are exactly x/1..x/n: no batch is seen in part or out of order;
//   - after reading Offsets o, the key x/o.Changelog is there and Count is at
//     least 2*o.Changelog: data is never behind the offsets that claim it.
func TestConcurrent(t *testing.T) {
	const batches = 300
	for name, open := range implementations {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			key := func(p string, i uint64) []byte { return []byte(fmt.Sprintf("%s/%08d", p, i)) }
			var done atomic.Bool
			var wg sync.WaitGroup
			for r := 0; r < 3; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !done.Load() {
						var nx, ny uint64
						err := s.Scan("t", nil, nil, func(k, v []byte) bool {
							if k[0] == 'x' {
								nx++
								if !bytes.Equal(k, key("x", nx)) {
									t.Errorf("Scan: key %s, want %s", k, key("x", nx))
									return false
								}
							} else {
								ny++
							}
							return true
						})
						if err != nil || nx != ny {
							t.Errorf("Scan: %d x keys, %d y keys, err %v", nx, ny, err)
						}
						o, err := s.Offsets()
						if err != nil {
							t.Errorf("Offsets: %v", err)
						}
						if o.Changelog == 0 {
							continue
						}
						if _, found, err := s.Get("t", key("x", o.Changelog)); !found || err != nil {
							t.Errorf("Get(x/%d) after Offsets %d: found %v, err %v", o.Changelog, o.Changelog, found, err)
						}
						if n, err := s.Count("t"); err != nil || uint64(n) < 2*o.Changelog {
							t.Errorf("Count = %d, %v after Offsets %d", n, err, o.Changelog)
						}
						if t.Failed() {
							return
						}
					}
				}()
			}
			for i := uint64(1); i <= batches && !t.Failed(); i++ {
				err := s.Apply(store.Batch{
					Mutations: []store.Mutation{
						{Table: "t", Key: key("y", i), Value: []byte("y")},
						{Table: "t", Key: key("x", i), Value: []byte("x")},
					},
					Offsets: store.Offsets{Changelog: i},
				})
				if err != nil {
					t.Errorf("Apply %d: %v", i, err)
				}
			}
			done.Store(true)
			wg.Wait()
			wantCount(t, s, "t", 2*batches)
		})
	}
}

func TestMemoryProvider(t *testing.T) {
	mp := store.NewMemoryProvider()
	s, err := mp.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, put("t", "a", "1"))
	if _, err := mp.Open(0); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open of an open store: %v, want ErrLocked", err)
	}
	if err := mp.Destroy(0); err == nil {
		t.Fatal("Destroy of an open store: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = mp.Open(0) // a restart keeps the data
	if err != nil {
		t.Fatal(err)
	}
	wantGet(t, s, "t", []byte("a"), []byte("1"))
	other, err := mp.Open(1)
	if err != nil {
		t.Fatal(err)
	}
	wantCount(t, other, "t", 0)
	_ = s.Close()
	if err := mp.Destroy(0); err != nil {
		t.Fatal(err)
	}
	if err := mp.Destroy(7); err != nil { // never opened
		t.Fatal(err)
	}
	s, err = mp.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, "t", 0)
}
