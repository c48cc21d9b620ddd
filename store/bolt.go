package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Layout of a store file:
//
//	meta/changelog   Offsets.Changelog, uint64 big-endian
//	meta/source      Offsets.Source, uint64 big-endian
//	meta/epoch       Offsets.Epoch, raw bytes
//	meta/src_epoch   Offsets.SourceEpoch, raw bytes (absent in older files)
//	tables/<table>/  one bucket per table; key 0x00+key holds the value
//
// Every table key is stored behind a 0x00 byte because bbolt rejects
// zero-length keys and the empty key is a valid key here. The byte keeps the
// order of keys and costs one byte per key; it makes the largest key
// bbolt.MaxKeySize-1 bytes.
var (
	bucketMeta   = []byte("meta")
	bucketTables = []byte("tables")
	keyChangelog = []byte("changelog")
	keySource    = []byte("source")
	keyEpoch     = []byte("epoch")
	keySrcEpoch  = []byte("src_epoch")
)

// Options tune Bolt stores. A nil *Options means the defaults (the zero
// value of every field).
type Options struct {
	// NoSync skips the two fsyncs bbolt makes to commit every Apply.
	// Default false: an Apply that returned is on disk. With NoSync a crash
	// of the process loses nothing, but an OS crash or power loss can lose
	// the last batches or leave a file whose pages do not match its meta
	// page, which Open does not always detect: use it only where the store
	// is rebuilt after such a crash anyway (or in tests). Saves the fsyncs'
	// latency, milliseconds per Apply on most disks.
	NoSync bool

	// OpenTimeout is how long Open waits for the file lock held by another
	// holder before it returns ErrLocked. Default (zero) 1s; negative: try
	// once. Open waits in steps of 50ms.
	OpenTimeout time.Duration

	// SkipVerify skips the consistency check of Open. Default false: Open
	// reads every page of the file, checking that each names itself and
	// holds its keys and values, then runs bbolt's tx.Check over it, and
	// returns ErrCorrupt on any finding. That costs a full read of the file
	// (about twice: once for the pages, once for the check), so open time
	// grows with the file size. Even with SkipVerify, Open checks the meta
	// pages, that the file is as long as its meta page says, and the
	// freelist page (which bbolt reads as it opens): a few pages. With it,
	// damage elsewhere shows later, as ErrCorrupt from the method that
	// reads it.
	SkipVerify bool

	// bbolt's freelist options stay at their defaults: the hashmap freelist
	// and NoFreelistSync made no difference beyond noise in
	// BenchmarkBoltApplyRandom10k (up to 500k keys, 70 MB).
}

// initialMmapSize is the size of the memory map bbolt starts a store with:
// 16 MiB on 64-bit platforms, bbolt's default (32 KiB, then doubling) on
// 32-bit ones, whose address space is small. Each time bbolt grows its map
// inside a write transaction it first copies every key and value the
// transaction touched out of the old map (Bucket.dereference): filling a
// new store, whose first transactions touch all of it, grew the map nine
// times, and the copies were 15% of a recovery's CPU
// (BenchmarkBoltRebuild: 52 → 29 ms of CPU per 12,500 keys). The map is
// address space, not memory; as bbolt grows a file whose map is at most
// 16 MiB to the map's size, a store's file is 16 MiB from its first growth
// on (sparse where the file system allows).
const initialMmapSize = strconv.IntSize / 64 * (16 << 20)

// defaultOpenTimeout is Options.OpenTimeout's default.
const defaultOpenTimeout = time.Second

// Dir is a Provider keeping each partition in a bbolt file of one directory.
// It holds no state besides its path and options; every Open opens the file.
type Dir struct {
	path string
	opts Options
}

var _ Provider = (*Dir)(nil)

// NewDir returns a Dir keeping partition files in path, which Open creates
// (mode 0750) when missing. opts may be nil for the defaults.
func NewDir(path string, opts *Options) *Dir {
	d := &Dir{path: path}
	if opts != nil {
		d.opts = *opts
	}
	return d
}

// Path returns the file of partition p: <path>/partition-%04d.db.
func (d *Dir) Path(p int) string {
	return filepath.Join(d.path, fmt.Sprintf("partition-%04d.db", p))
}

// Open opens (creating if needed) the store of partition p. The Store is a
// *Bolt; see OpenBolt for the errors and costs.
func (d *Dir) Open(p int) (Store, error) {
	if p < 0 {
		return nil, fmt.Errorf("store: open partition %d: negative partition", p)
	}
	if err := os.MkdirAll(d.path, 0o750); err != nil {
		return nil, fmt.Errorf("store: open partition %d: %w", p, err)
	}
	b, err := OpenBolt(d.Path(p), &d.opts)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Destroy removes the file of partition p, then the mark of its rebuild
// if any (rebuild.go); a missing file is not an error. The store must be
// closed: a store still open keeps working on the removed file, unseen by
// the next Open.
func (d *Dir) Destroy(p int) error {
	for _, path := range []string{d.Path(p), d.Path(p) + rebuildSuffix} {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: destroy partition %d: %w", p, err)
		}
	}
	return nil
}

// Bolt is a Store in one bbolt file. Reads run in bbolt read transactions
// and see the state of the last Apply that finished before they began; Apply
// runs one write transaction. Get reuses one read transaction between
// Applies (snapshot.go). A long Scan does not block Apply, except when
// Apply must grow the file's memory map, which waits for running reads.
type Bolt struct {
	db     *bolt.DB
	path   string
	closed atomic.Bool
	noSync bool // Options.NoSync
	// rebuilding: between StartRebuild and EndRebuild (rebuild.go).
	rebuilding bool
	snap       snapshot // Get's read transaction (snapshot.go)
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating if needed) the store in the file at path; opts
// may be nil for the defaults. Its errors wrap ErrLocked when another holder
// keeps the file locked beyond opts.OpenTimeout, and ErrCorrupt when the
// file cannot be trusted (see Options.SkipVerify for what is checked and at
// what cost). Other errors (permissions, a missing directory) wrap the OS
// error and say nothing of the file's content. On any error the file is
// closed and its lock released.
//
// Open takes the file's lock before it reads anything, then reads the file
// with checkFile before bbolt maps it: bbolt trusts the pages it maps and
// panics or faults on damaged ones, and does so in tx.Check's own goroutine,
// where a panic cannot be recovered and ends the process.
func OpenBolt(path string, opts *Options) (*Bolt, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.OpenTimeout == 0 {
		o.OpenTimeout = defaultOpenTimeout
	}
	file, err := lockFile(path, o.OpenTimeout)
	if err != nil {
		return nil, err
	}
	if err := checkRebuildMark(path); err != nil {
		_ = file.Close()
		return nil, err
	}
	fi, err := file.Stat()
	if err == nil {
		err = checkFile(file, fi.Size(), !o.SkipVerify)
	}
	if err != nil {
		_ = file.Close()
		if isOSError(err) {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	handed := false
	bo := &bolt.Options{
		Timeout:         o.OpenTimeout,
		NoSync:          o.NoSync,
		InitialMmapSize: initialMmapSize,
		// Nothing reads DB.Stats; counting costs every transaction.
		NoStatistics: true,
		// bbolt uses the file already locked and checked.
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			if handed || name != path {
				return nil, fmt.Errorf("store: bbolt opened %s again", name)
			}
			handed = true
			return file, nil
		},
	}
	var db *bolt.DB
	err = guard(path, "open", nil, func() (err error) {
		db, err = bolt.Open(path, 0o600, bo)
		return err
	})
	switch {
	case errors.Is(err, ErrCorrupt): // bolt.Open panicked: the file is still open
		_ = file.Close()
		return nil, err
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s: %w", ErrLocked, path, err)
	case isOSError(err):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	b := &Bolt{db: db, path: path, noSync: o.NoSync}
	if err := b.init(!o.SkipVerify); err != nil {
		_ = guard(path, "close", nil, db.Close)
		return nil, err
	}
	return b, nil
}

// lockRetry is how often lockFile tries a lock held by another holder.
const lockRetry = 50 * time.Millisecond

// lockFile opens (creating, mode 0600) the file at path for reading and
// writing and takes its exclusive lock, trying every lockRetry until
// timeout has passed (a negative timeout: once). The lock is the one bbolt
// takes (flock): other processes and other opens in this one wait for it.
func lockFile(path string, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := TryLock(f)
		switch {
		case err != nil:
			_ = f.Close()
			return nil, fmt.Errorf("store: lock %s: %w", path, err)
		case ok:
			return f, nil
		case !time.Now().Add(lockRetry).Before(deadline):
			_ = f.Close()
			return nil, fmt.Errorf("%w: %s: held beyond %v", ErrLocked, path, timeout)
		}
		time.Sleep(lockRetry) // flock has no wake-up with a deadline
	}
}

// isOSError reports whether err comes from the OS (permissions, I/O,
// resources) rather than from the content of the file.
func isOSError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

// init checks the file and creates the top-level buckets in a new one.
func (b *Bolt) init(verify bool) error {
	missing := false
	err := guard(b.path, "verify", nil, func() error {
		return b.db.View(func(tx *bolt.Tx) error {
			hasMeta, hasTables := tx.Bucket(bucketMeta) != nil, tx.Bucket(bucketTables) != nil
			if hasMeta != hasTables {
				return fmt.Errorf("%w: %s: one of the buckets %s and %s is missing",
					ErrCorrupt, b.path, bucketMeta, bucketTables)
			}
			missing = !hasMeta
			if verify {
				return check(b.path, tx)
			}
			return nil
		})
	})
	if err != nil || !missing {
		return err
	}
	return b.update("init", func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketTables} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// check runs bbolt's tx.Check over the file read by tx: freed pages,
// unreachable pages, key order. tx.Check runs in a goroutine of its own,
// where a memory fault on a damaged page would end the process (bbolt
// recovers its panics there, not faults); Open runs it only on a file that
// checkFile walked, where every page tx.Check reads names itself and holds
// its keys.
func check(path string, tx *bolt.Tx) error {
	var errs []error
	for err := range tx.Check() { // drain: Check's goroutine blocks on sends
		if len(errs) < 10 {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s: consistency check: %w", ErrCorrupt, path, errors.Join(errs...))
	}
	return nil
}

// guard runs fn and turns a panic or a memory fault in it (bbolt panics on
// bad pages, and faults on pages past the end of a truncated file) into an
// error wrapping ErrCorrupt. A panic raised while *inUser is true comes from
// the caller's code, not bbolt's, and is passed on.
func guard(path, op string, inUser *bool, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if inUser != nil && *inUser {
				panic(r) // still on the panicking stack: the trace shows where
			}
			err = fmt.Errorf("%w: %s: %s: bbolt panicked: %v", ErrCorrupt, path, op, r)
		}
	}()
	return fn()
}

// view runs fn in a read transaction, under guard.
func (b *Bolt) view(op string, inUser *bool, fn func(tx *bolt.Tx) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.mapClosed(guard(b.path, op, inUser, func() error { return b.db.View(fn) }))
}

// update runs fn in a write transaction, under guard.
func (b *Bolt) update(op string, fn func(tx *bolt.Tx) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.snap.begin()
	defer b.snap.end()
	return b.mapClosed(guard(b.path, op, nil, func() error { return b.db.Update(fn) }))
}

func (b *Bolt) mapClosed(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// storedKey returns key as stored: behind a 0x00 byte (see the layout at
// the top of this file).
func storedKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	copy(k[1:], key)
	return k
}

// table returns the bucket of table name, nil when it does not exist.
func table(tx *bolt.Tx, name string) *bolt.Bucket {
	if name == "" {
		return nil
	}
	tables := tx.Bucket(bucketTables)
	if tables == nil {
		return nil
	}
	return tables.Bucket([]byte(name))
}

// Scan calls fn in key order for the entries of table that start with prefix
// and are greater than after; a nil after starts at the first entry, while a
// non-nil empty after skips the empty key. The slices passed to fn point
// into the memory-mapped file: fn must not modify them nor keep them after
// it returns, and must not call the store's methods (bbolt may deadlock when
// Apply grows the file meanwhile). Scan runs in one read transaction, so fn
// sees one consistent state; a panic in fn is passed on to the caller.
func (b *Bolt) Scan(tableName string, prefix, after []byte, fn func(key, value []byte) bool) error {
	inFn := false
	return b.view("scan", &inFn, func(tx *bolt.Tx) error {
		tb := table(tx, tableName)
		if tb == nil {
			return nil
		}
		start, skip := prefix, false
		if after != nil && bytes.Compare(after, prefix) >= 0 {
			start, skip = after, true
		}
		c := tb.Cursor()
		for k, v := c.Seek(storedKey(start)); k != nil; k, v = c.Next() {
			if k[0] != 0 {
				return fmt.Errorf("%w: %s: table %q: foreign key %x", ErrCorrupt, b.path, tableName, k)
			}
			key := k[1:]
			if skip {
				skip = false
				if bytes.Equal(key, after) {
					continue
				}
			}
			if !bytes.HasPrefix(key, prefix) {
				return nil
			}
			inFn = true
			more := fn(key, v)
			inFn = false
			if !more {
				return nil
			}
		}
		return nil
	})
}

// Count returns the number of keys in table. Cost: one read transaction
// and a read of the header of every page of the table (bbolt's
// Bucket.Stats), linear in the table's size.
func (b *Bolt) Count(tableName string) (int, error) {
	n := 0
	err := b.view("count", nil, func(tx *bolt.Tx) error {
		if tb := table(tx, tableName); tb != nil {
			n = tb.Stats().KeyN // tables hold no nested buckets, so this is exact
		}
		return nil
	})
	return n, err
}

// Offsets returns the offsets written by the last Apply. Cost: one read
// transaction.
func (b *Bolt) Offsets() (Offsets, error) {
	var o Offsets
	err := b.view("offsets", nil, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: %s: no %s bucket", ErrCorrupt, b.path, bucketMeta)
		}
		for _, f := range []struct {
			key []byte
			dst *uint64
		}{{keyChangelog, &o.Changelog}, {keySource, &o.Source}} {
			v := meta.Get(f.key)
			switch len(v) {
			case 0: // never written
			case 8:
				*f.dst = binary.BigEndian.Uint64(v)
			default:
				return fmt.Errorf("%w: %s: offset %s has %d bytes", ErrCorrupt, b.path, f.key, len(v))
			}
		}
		o.Epoch = string(meta.Get(keyEpoch))
		o.SourceEpoch = string(meta.Get(keySrcEpoch))
		return nil
	})
	if err != nil {
		return Offsets{}, err
	}
	return o, nil
}

// Apply writes the batch in one bbolt write transaction, then (unless
// Options.NoSync) fsyncs the file. It sorts a copy of the mutations by table
// and key first (a stable sort, so the last mutation of a key wins): sorted
// writes descend bbolt's B+tree in key order, each page once and while it is
// in the CPU caches, which was faster in BenchmarkBoltApplyRandom10k without
// fsync (the pages the commit writes are the same in any order). Every
// mutation must name a table; keys must be at most bolt.MaxKeySize-1 bytes.
// On any error nothing of the batch is written. Apply keeps none of the
// batch's slices after it returns.
func (b *Bolt) Apply(batch Batch) error {
	// Applied in key order (bbolt writes sorted keys fastest), writes to
	// one key in batch order: sort indices, ties broken by position, which
	// moves 8-byte ints instead of the mutations.
	ms := batch.Mutations
	order := make([]int, len(ms))
	n := 0
	for i := range order {
		order[i] = i
		n += 1 + len(ms[i].Key)
	}
	slices.SortFunc(order, func(i, j int) int {
		if c := strings.Compare(ms[i].Table, ms[j].Table); c != 0 {
			return c
		}
		if c := bytes.Compare(ms[i].Key, ms[j].Key); c != 0 {
			return c
		}
		return cmp.Compare(i, j)
	})
	// bbolt needs the keys until commit: store them all in one allocation.
	keys := make([]byte, 0, n)
	return b.update("apply", func(tx *bolt.Tx) error {
		tables := tx.Bucket(bucketTables)
		var tb *bolt.Bucket // bucket of table cur; nil if it does not exist
		cur := ""
		for _, i := range order {
			m := &ms[i]
			if m.Table == "" {
				return errEmptyTable
			}
			if m.Table != cur {
				cur, tb = m.Table, tables.Bucket([]byte(m.Table))
			}
			keys = append(append(keys, 0), m.Key...)
			k := keys[len(keys)-1-len(m.Key):]
			if m.Delete {
				if tb != nil {
					if err := tb.Delete(k); err != nil {
						return fmt.Errorf("store: delete %.64q in table %q: %w", m.Key, m.Table, err)
					}
				}
				continue
			}
			if tb == nil {
				var err error
				if tb, err = tables.CreateBucket([]byte(m.Table)); err != nil {
					return fmt.Errorf("store: create table %q: %w", m.Table, err)
				}
			}
			if err := tb.Put(k, m.Value); err != nil {
				return fmt.Errorf("store: put %.64q in table %q: %w", m.Key, m.Table, err)
			}
		}
		return putOffsets(tx.Bucket(bucketMeta), batch.Offsets)
	})
}

func putOffsets(meta *bolt.Bucket, o Offsets) error {
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], o.Changelog)
	binary.BigEndian.PutUint64(buf[8:], o.Source)
	for _, kv := range [][2][]byte{
		{keyChangelog, buf[:8]}, {keySource, buf[8:]}, {keyEpoch, []byte(o.Epoch)}, {keySrcEpoch, []byte(o.SourceEpoch)},
	} {
		if err := meta.Put(kv[0], kv[1]); err != nil {
			return fmt.Errorf("store: put offset %s: %w", kv[0], err)
		}
	}
	return nil
}

// Close closes the file and releases its lock, after the running
// transactions end. It is idempotent; afterwards the other methods return
// ErrClosed.
func (b *Bolt) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.snap.begin() // never ended: no snapshot opens again
	if err := guard(b.path, "close", nil, b.db.Close); err != nil {
		return fmt.Errorf("store: close %s: %w", b.path, err)
	}
	return nil
}
