package store

import (
	"bytes"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// snapshot is the read transaction Get reuses between writes. Beginning and
// ending a bbolt read transaction and opening a table's bucket in it cost
// more than the descent to a key: about half of a Get on a small table
// (BenchmarkBoltGet). Get keeps its transaction open until a write begins,
// so the Gets between two Applies (a pipeline's reads of keys its buffer
// does not hold, a query's lookups) share one.
//
// An open read transaction holds bbolt's memory map, which a write that
// grows the file and Close must replace; and a transaction may be used by
// one goroutine at a time. So every write ends the snapshot before it
// begins, no Get opens one while a write runs (it reads in a transaction of
// its own instead, as before), and the snapshot's users take turns under
// mu.
type snapshot struct {
	mu sync.Mutex
	tx *bolt.Tx // nil: none open
	// tables holds a cursor on each table bucket opened in tx, by name
	// (nil: absent). A cursor's Seek starts from the root, and keeps the
	// stack of its descent for the next one.
	tables map[string]*bolt.Cursor
	// writers counts the write transactions running, and Close (which
	// never ends): while it is above zero no snapshot opens.
	writers int
}

// begin ends the snapshot and keeps a new one from opening until end.
func (s *snapshot) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writers++
	s.drop()
}

// end lets a snapshot open again after a write.
func (s *snapshot) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writers--
}

// drop ends the open snapshot, if any. The caller holds mu.
func (s *snapshot) drop() {
	if s.tx == nil {
		return
	}
	_ = s.tx.Rollback() // a read transaction: nothing to lose
	s.tx, s.tables = nil, nil
}

// cursor returns a cursor on the bucket of table name in the snapshot
// (nil when the table has none), opening the snapshot first when none is
// open. The caller holds mu and has checked that no write runs.
func (s *snapshot) cursor(db *bolt.DB, name string) (*bolt.Cursor, error) {
	if s.tx == nil {
		tx, err := db.Begin(false)
		if err != nil {
			return nil, err
		}
		s.tx, s.tables = tx, make(map[string]*bolt.Cursor)
	}
	if c, ok := s.tables[name]; ok {
		return c, nil
	}
	var c *bolt.Cursor
	if tb := table(s.tx, name); tb != nil {
		c = tb.Cursor()
	}
	s.tables[name] = c
	return c, nil
}

// maxStackKey is the longest key Get looks up without allocating its
// stored form.
const maxStackKey = 63

// Get returns a copy of the value of key in table. Cost: a descent of the
// table's B+tree, in the read transaction of the previous Get unless an
// Apply ran since (see snapshot); while an Apply runs, in a read
// transaction of its own.
func (b *Bolt) Get(tableName string, key []byte) (value []byte, found bool, err error) {
	if b.closed.Load() {
		return nil, false, ErrClosed
	}
	var buf [1 + maxStackKey]byte
	var sk []byte
	if len(key) <= maxStackKey {
		sk = append(buf[:1], key...) // buf[0] is the 0x00 of storedKey
	} else {
		sk = storedKey(key)
	}
	s := &b.snap
	s.mu.Lock()
	if s.writers > 0 {
		s.mu.Unlock()
		return b.getInTx(tableName, sk)
	}
	defer s.mu.Unlock()
	err = guard(b.path, "get", nil, func() error {
		c, err := s.cursor(b.db, tableName)
		if err != nil || c == nil {
			return err
		}
		value, found = seek(c, sk)
		return nil
	})
	if err != nil {
		s.drop() // a damaged page: the next Get starts over
		return nil, false, b.mapClosed(err)
	}
	return value, found, nil
}

// getInTx is Get in a read transaction of its own.
func (b *Bolt) getInTx(tableName string, sk []byte) (value []byte, found bool, err error) {
	err = b.view("get", nil, func(tx *bolt.Tx) error {
		if tb := table(tx, tableName); tb != nil {
			value, found = seek(tb.Cursor(), sk)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return value, found, nil
}

// seek returns a copy of the value stored under sk, found with c.
func seek(c *bolt.Cursor, sk []byte) ([]byte, bool) {
	k, v := c.Seek(sk)
	if !bytes.Equal(k, sk) {
		return nil, false
	}
	return append([]byte{}, v...), true
}
