package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgetables/edgetables/store"
)

// TestRebuildMark: a store between StartRebuild and EndRebuild (its
// transactions unsynced) is refused by Open after a crash, as corrupt,
// until Destroy; after EndRebuild it opens with its data and offsets.
func TestRebuildMark(t *testing.T) {
	d := store.NewDir(t.TempDir(), nil)
	open := func() *store.Bolt {
		t.Helper()
		s, err := d.Open(0)
		if err != nil {
			t.Fatal(err)
		}
		return s.(*store.Bolt)
	}
	batch := store.Batch{Mutations: []store.Mutation{{Table: "t", Key: []byte("k"), Value: []byte("v")}}, Offsets: store.Offsets{Changelog: 7}}

	// Interrupted: closed (as by a crash) before EndRebuild.
	s := open()
	must(t, s.StartRebuild())
	must(t, s.Apply(batch))
	must(t, s.Close())
	if _, err := d.Open(0); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open of an interrupted rebuild: %v, want ErrCorrupt", err)
	}
	must(t, d.Destroy(0))
	if _, err := os.Stat(d.Path(0) + ".rebuilding"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the mark outlived Destroy: %v", err)
	}

	// Finished.
	s = open()
	if o, err := s.Offsets(); err != nil || o.Changelog != 0 {
		t.Fatalf("a destroyed store reopened with offsets %+v, %v", o, err)
	}
	must(t, s.StartRebuild())
	must(t, s.Apply(batch))
	must(t, s.EndRebuild())
	must(t, s.EndRebuild()) // nothing to end
	must(t, s.Apply(store.Batch{Offsets: store.Offsets{Changelog: 8}}))
	must(t, s.Close())
	s = open()
	defer s.Close()
	if o, err := s.Offsets(); err != nil || o.Changelog != 8 {
		t.Fatalf("Offsets after a finished rebuild = %+v, %v; want changelog 8", o, err)
	}
	if v, found, err := s.Get("t", []byte("k")); err != nil || !found || string(v) != "v" {
		t.Fatalf("Get after a finished rebuild = %q, %v, %v", v, found, err)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(d.Path(0)), "*.rebuilding")); len(m) > 0 {
		t.Fatalf("marks left: %v", m)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
