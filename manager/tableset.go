package manager

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edgetables/edgetables/store"
)

// The tables a store covers.
//
// A replay skips the records of tables the node does not declare, but the
// store's offset moves past them. A node upgraded to declare a table that
// other nodes already write (a rolling upgrade adding a table) would then
// never apply the records its store skipped, and once it owned the
// partition it would write values computed from nothing. So every store
// records the tables its offsets cover, under a hidden table; a store that
// does not cover a table the node now declares is rebuilt by a full replay
// (once, when the table is first declared on the node). A rebuild costs a
// replay of the compacted log (its live keys), which the upgrade's restart
// mostly pays anyway; per-table offsets would save it but would make every
// replay and commit track several offsets per partition.

// tablesTable is the hidden store table recording the tables the store's
// offsets cover: one key (empty) whose value is their names, sorted, one
// per line.
const tablesTable = "\x00tables"

// storeTables returns the names of the tables kept in partition stores
// (global is false) or in the global tables' store (global is true),
// sorted.
func (m *TableManager) storeTables(global bool) []string {
	var out []string
	for _, t := range m.Tables() {
		if isGlobalTable(t) == global {
			out = append(out, t.Name())
		}
	}
	return out
}

// coveredTables returns the tables st records it covers; ok is false if it
// records none (a store written before this record existed).
func coveredTables(st store.Store) (tables []string, ok bool, err error) {
	v, found, err := st.Get(tablesTable, nil)
	if err != nil || !found {
		return nil, false, err
	}
	if len(v) == 0 {
		return nil, true, nil
	}
	return strings.Split(string(v), "\n"), true, nil
}

// missingTables returns the tables of declared that covered lacks.
func missingTables(covered, declared []string) []string {
	var out []string
	for _, t := range declared {
		if !slices.Contains(covered, t) {
			out = append(out, t)
		}
	}
	return out
}

// coverTables records in st that its offsets, offs, cover tables, unless
// it already records exactly them.
func coverTables(st store.Store, offs store.Offsets, tables []string) error {
	if covered, ok, err := coveredTables(st); err == nil && ok && slices.Equal(covered, tables) {
		return nil
	}
	err := st.Apply(store.Batch{Mutations: []store.Mutation{{Table: tablesTable, Value: []byte(strings.Join(tables, "\n"))}}, Offsets: offs})
	if err != nil {
		return fmt.Errorf("record the store's tables: %w", err)
	}
	return nil
}
