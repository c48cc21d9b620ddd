package manager

import (
	"slices"
	"time"
)

// windowIndex lists the windows of one table in one active partition by
// start, so that a closing pass visits only the windows that are due and
// knows the next closing time without reading the store. It is built by
// one scan of the store when the partition becomes active (the first pass
// after an activation) and kept up to date by Update (each window it
// creates) and the closing passes (each window they close).
//
// It may list a window twice, or one that is gone (created by an event
// whose writes were then dropped): closing skips those. Its cost is one
// store key per open window in memory, and a sort of the due keys of each
// start. The processing goroutine owns it.
type windowIndex struct {
	starts []int64            // the starts listed, ascending, distinct
	keys   map[int64][]string // store keys by start
}

func newWindowIndex() *windowIndex { return &windowIndex{keys: make(map[int64][]string)} }

// add lists the window stored at sk.
func (x *windowIndex) add(sk []byte) {
	_, start, ok := splitWindowKey(sk)
	if !ok {
		return
	}
	ks, listed := x.keys[start]
	if !listed {
		i, _ := slices.BinarySearch(x.starts, start)
		x.starts = slices.Insert(x.starts, i, start)
	}
	x.keys[start] = append(ks, string(sk))
}

// len returns the number of windows listed, duplicates included.
func (x *windowIndex) len() int {
	n := 0
	for _, ks := range x.keys {
		n += len(ks)
	}
	return n
}

// take removes from x and returns the windows whose closing time
// (closeAt of their start) is at or before now, in the order they close
// (closing time, then store key), without duplicates, at most limit of
// them; truncated reports that due windows were left listed.
func (x *windowIndex) take(now time.Time, closeAt func(start int64) time.Time, limit int) (due []dueWindow, truncated bool) {
	n := 0 // starts emptied
	for ; n < len(x.starts); n++ {
		s := x.starts[n]
		at := closeAt(s)
		if now.Before(at) {
			break
		}
		if len(due) >= limit {
			truncated = true
			break
		}
		ks := x.keys[s]
		slices.Sort(ks)
		ks = slices.Compact(ks)
		room := limit - len(due)
		if len(ks) > room {
			for _, k := range ks[:room] {
				due = append(due, dueWindow{at: at, sk: []byte(k)})
			}
			x.keys[s] = slices.Clone(ks[room:])
			truncated = true
			break
		}
		for _, k := range ks {
			due = append(due, dueWindow{at: at, sk: []byte(k)})
		}
		delete(x.keys, s)
	}
	x.starts = slices.Delete(x.starts, 0, n)
	return due, truncated
}
