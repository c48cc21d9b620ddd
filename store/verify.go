package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkFile reads the file of a store through f, before bbolt maps it, and
// returns an error (plain: OpenBolt wraps it in ErrCorrupt, unless it comes
// from the OS) when bbolt could not use it without panicking or faulting,
// in bolt.Open or in tx.Check, whose goroutine no recover reaches. It always
// checks the meta pages, the file's length and the freelist page (a few
// pages); with deep it also walks every page of every bucket, which costs a
// read of the file. It reads with pread, never through a memory map, so a
// damaged file cannot fault here. A new (empty) file passes.
//
// What bbolt itself tolerates passes: one meta page whose content fails its
// checksum (what a torn write of a commit leaves), since bbolt then reads
// the other one, the commit before. A meta page whose page header does not
// name it does not pass: tx.Check asserts on it.
func checkFile(f *os.File, size int64, deep bool) error {
	if size == 0 {
		return nil
	}
	m, err := checkMetas(f, size)
	if err != nil {
		return err
	}
	c := &fileCheck{f: f, ps: uint64(m.pageSize), hwm: m.hwm, seen: make([]uint64, (m.hwm+63)/64)}
	if err := c.freelist(m.freelist); err != nil {
		return err
	}
	if !deep {
		return nil
	}
	return c.tree(m.root)
}

// The layout of a bbolt file (format version 2), as in bbolt's
// internal/common: every page starts with a header (id u64, flags u16,
// count u16, overflow u32), followed by count elements. bbolt writes the
// fields in the machine's byte order.
const (
	pageHeaderSize   = 16
	elementSize      = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // the value of a bucket entry: root pgid u64, sequence u64
	metaSize         = 64 // magic, version, page size, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	metaSumSize      = 56 // the checksum covers the fields before it

	branchPage     = 0x01
	leafPage       = 0x02
	metaPage       = 0x04
	freelistPage   = 0x10
	bucketLeafFlag = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	minPageSize = 1024    // the smallest page size bbolt looks for
	maxPageSize = 1 << 24 // the largest page size bbolt looks for
)

var ne = binary.NativeEndian

// boltMeta is the content of a meta page.
type boltMeta struct {
	pageSize                  uint32
	root, freelist, hwm, txid uint64
}

// parseMeta parses the meta in the page starting at p; ok is false when
// bbolt would not use it (bad magic, version or checksum).
func parseMeta(p []byte) (m boltMeta, ok bool) {
	if len(p) < pageHeaderSize+metaSize {
		return m, false
	}
	b := p[pageHeaderSize:][:metaSize]
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSumSize])
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	return boltMeta{pageSize: ne.Uint32(b[8:]), root: ne.Uint64(b[16:]), freelist: ne.Uint64(b[32:]),
		hwm: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:])}, true
}

// readAt reads len(b) bytes at off; a short file is an error of its own,
// not the OS's.
func readAt(f *os.File, b []byte, off int64) error {
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%d bytes at offset %d are past the end of the file", len(b), off)
		}
		return err
	}
	return nil
}

// checkMetas checks both meta pages and returns the one bbolt uses: the
// valid one with the higher transaction id. It finds the page size as
// bbolt does: in meta page 0, else in a valid meta page 1 at 1 KiB, 2 KiB,
// ... 16 MiB.
func checkMetas(f *os.File, size int64) (boltMeta, error) {
	var buf [pageHeaderSize + metaSize]byte
	if size < int64(len(buf)) {
		return boltMeta{}, fmt.Errorf("file of %d bytes is too short for a bbolt database", size)
	}
	if err := readAt(f, buf[:], 0); err != nil {
		return boltMeta{}, err
	}
	m0, ok0 := parseMeta(buf[:])
	ps := int64(m0.pageSize)
	if !ok0 {
		for ps = minPageSize; ps <= maxPageSize && ps+int64(len(buf)) <= size; ps *= 2 {
			if err := readAt(f, buf[:], ps); err != nil {
				return boltMeta{}, err
			}
			if m, ok := parseMeta(buf[:]); ok && int64(m.pageSize) == ps {
				break
			}
		}
		if ps > maxPageSize || ps+int64(len(buf)) > size {
			return boltMeta{}, errors.New("neither meta page is valid")
		}
	}
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page 0: page size %d", ps)
	}
	if size < 2*ps {
		return boltMeta{}, fmt.Errorf("file of %d bytes is shorter than its two meta pages of %d bytes", size, ps)
	}
	var metas [2]boltMeta
	var valid [2]bool
	for i := range metas {
		if err := readAt(f, buf[:], int64(i)*ps); err != nil {
			return boltMeta{}, err
		}
		if id, flags := ne.Uint64(buf[0:]), ne.Uint16(buf[8:]); id != uint64(i) || flags != metaPage {
			return boltMeta{}, fmt.Errorf("meta page %d: damaged page header (id %d, flags %#x)", i, id, flags)
		}
		metas[i], valid[i] = parseMeta(buf[:])
		if valid[i] && int64(metas[i].pageSize) != ps {
			return boltMeta{}, fmt.Errorf("meta page %d: page size %d, the other says %d", i, metas[i].pageSize, ps)
		}
	}
	a, b := 0, 1 // a: the higher transaction id, as bbolt's DB.meta
	if metas[1].txid > metas[0].txid {
		a, b = 1, 0
	}
	if !valid[a] {
		a = b
	}
	if !valid[a] {
		return boltMeta{}, errors.New("neither meta page is valid")
	}
	m := metas[a]
	switch {
	case m.hwm > uint64(size)/uint64(ps):
		return boltMeta{}, fmt.Errorf("file has %d bytes, its meta page says %d", size, m.hwm*uint64(ps))
	case m.root < 2 || m.root >= m.hwm:
		return boltMeta{}, fmt.Errorf("meta page %d: root page %d is not in [2, %d)", a, m.root, m.hwm)
	case m.freelist == noFreelist:
		// bbolt would rebuild the freelist and commit it in Open, a write
		// before any check; stores always write their freelist.
		return boltMeta{}, fmt.Errorf("meta page %d: no freelist page", a)
	case m.freelist < 2 || m.freelist >= m.hwm:
		return boltMeta{}, fmt.Errorf("meta page %d: freelist page %d is not in [2, %d)", a, m.freelist, m.hwm)
	}
	return m, nil
}

// fileCheck walks the pages of a file below its high-water mark.
type fileCheck struct {
	f    *os.File
	ps   uint64   // page size
	hwm  uint64   // high-water mark: pages at or above it are not in use
	seen []uint64 // bit per page: reached already
	buf  []byte
}

// page reads page id (with its overflow pages), checks its header and marks
// it seen: a page reached twice would make a walk loop.
func (c *fileCheck) page(id uint64, want uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d: not in [2, %d)", id, c.hwm)
	}
	if uint64(cap(c.buf)) < c.ps {
		c.buf = make([]byte, c.ps)
	}
	p := c.buf[:c.ps]
	if err := readAt(c.f, p, int64(id*c.ps)); err != nil {
		return nil, err
	}
	hid, flags, overflow := ne.Uint64(p[0:]), ne.Uint16(p[8:]), uint64(ne.Uint32(p[12:]))
	switch {
	case hid != id:
		return nil, fmt.Errorf("page %d: header names page %d", id, hid)
	case flags&want == 0 || flags&(flags-1) != 0:
		return nil, fmt.Errorf("page %d: unexpected page type %#x", id, flags)
	case overflow >= c.hwm-id:
		return nil, fmt.Errorf("page %d: %d overflow pages reach past the high-water mark %d", id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if c.seen[i/64]&(1<<(i%64)) != 0 {
			return nil, fmt.Errorf("page %d: reached twice", i)
		}
		c.seen[i/64] |= 1 << (i % 64)
	}
	if overflow > 0 {
		n := (overflow + 1) * c.ps
		if uint64(cap(c.buf)) < n {
			c.buf = append(make([]byte, 0, n), p...)
		}
		p = c.buf[:n]
		if err := readAt(c.f, p[c.ps:], int64((id+1)*c.ps)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// elements returns the number of elements of page p, checking that they
// fit in it.
func elements(p []byte) (int, error) {
	if len(p) < pageHeaderSize {
		return 0, fmt.Errorf("%d bytes are too short for a page", len(p))
	}
	n := int(ne.Uint16(p[10:]))
	if pageHeaderSize+n*elementSize > len(p) {
		return 0, fmt.Errorf("%d elements do not fit in %d bytes", n, len(p))
	}
	return n, nil
}

// freelist checks the freelist page: bbolt reads it in Open.
func (c *fileCheck) freelist(id uint64) error {
	p, err := c.page(id, freelistPage)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	ids := p[pageHeaderSize:]
	n := uint64(ne.Uint16(p[10:]))
	if n == 0xFFFF { // the count did not fit: it is the first element
		n = ne.Uint64(ids)
		ids = ids[8:]
	}
	if n > uint64(len(ids))/8 {
		return fmt.Errorf("freelist: page %d: %d ids do not fit in %d bytes", id, n, len(ids))
	}
	for i := range n {
		if free := ne.Uint64(ids[8*i:]); free < 2 || free >= c.hwm {
			return fmt.Errorf("freelist: page %d: free page %d is not in [2, %d)", id, free, c.hwm)
		}
	}
	return nil
}

// tree checks every page reachable from the root bucket's page root, and
// those of every bucket below it: the pages' headers, that every key and
// value lies in its page, and that no page is reached twice.
func (c *fileCheck) tree(root uint64) error {
	stack := []uint64{root}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		p, err := c.page(id, branchPage|leafPage)
		if err != nil {
			return err
		}
		if ne.Uint16(p[8:]) == leafPage {
			if stack, err = leaf(p, stack); err != nil {
				return fmt.Errorf("page %d: %w", id, err)
			}
			continue
		}
		n, err := elements(p)
		if err == nil && n == 0 {
			err = errors.New("branch page without elements")
		}
		if err != nil {
			return fmt.Errorf("page %d: %w", id, err)
		}
		for i := range n {
			e := pageHeaderSize + i*elementSize
			pos, ksize := uint64(ne.Uint32(p[e:])), uint64(ne.Uint32(p[e+4:]))
			if uint64(e)+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("page %d: key %d of %d bytes at %d is past the page's end", id, i, ksize, pos)
			}
			stack = append(stack, ne.Uint64(p[e+8:]))
		}
	}
	return nil
}

// leaf checks the elements of leaf page p (a page of the file, or the page
// of an inline bucket) and pushes the root pages of its buckets on stack.
func leaf(p []byte, stack []uint64) ([]uint64, error) {
	n, err := elements(p)
	if err != nil {
		return stack, err
	}
	for i := range n {
		e := pageHeaderSize + i*elementSize
		flags, pos := ne.Uint32(p[e:]), uint64(ne.Uint32(p[e+4:]))
		ksize, vsize := uint64(ne.Uint32(p[e+8:])), uint64(ne.Uint32(p[e+12:]))
		end := uint64(e) + pos + ksize + vsize
		if end > uint64(len(p)) {
			return stack, fmt.Errorf("entry %d of %d+%d bytes at %d is past the page's end", i, ksize, vsize, pos)
		}
		if flags&bucketLeafFlag == 0 {
			continue
		}
		v := p[end-vsize : end]
		if len(v) < bucketHeaderSize {
			return stack, fmt.Errorf("bucket %d: value of %d bytes", i, len(v))
		}
		if root := ne.Uint64(v); root != 0 {
			stack = append(stack, root)
			continue
		}
		inline := v[bucketHeaderSize:] // an inline bucket: its page is in the value
		if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPage {
			return stack, fmt.Errorf("bucket %d: damaged inline page", i)
		}
		if stack, err = leaf(inline, stack); err != nil {
			return stack, fmt.Errorf("bucket %d: inline page: %w", i, err)
		}
	}
	return stack, nil
}
