package manager

import "reflect"

// TableKind is the kind of a table: what its stored records mean.
type TableKind string

// The kinds of table.
const (
	// KindTable is a Table: one value per key.
	KindTable TableKind = "table"
	// KindWindowed is a WindowedTable: one value per key and window.
	KindWindowed TableKind = "windowed"
	// KindSet is a SetTable: one set of members per key.
	KindSet TableKind = "set"
	// KindGlobal is a GlobalTable: held whole by every node.
	KindGlobal TableKind = "global"
)

// TableShape is what a table's stored bytes depend on, besides the logic of
// the agents that write it: its kind, its codecs and, for a windowed table,
// how it cuts time. An app records the shape of every table it has (see
// package edge), so that a table whose shape changes is not read with the
// wrong codec or folded by the wrong rule.
type TableShape struct {
	// Kind is the table's kind.
	Kind TableKind
	// KeyCodec and ValueCodec name the Go types of the key codec and of the
	// value codec (a set's member codec), as reflect prints them (for
	// example "manager.JSONCodec[float64]"): a codec of another type may
	// encode differently.
	KeyCodec, ValueCodec string
	// Windows and Time are a windowed table's windows (with defaults filled
	// in) and time source; zero for other kinds.
	Windows Windows
	Time    TimeSource
}

// ShapeOf returns the shape of a table made by NewTable, NewWindowedTable,
// NewSetTable or NewGlobalTable.
func ShapeOf(c Collection) TableShape {
	if s, ok := c.(interface{ shape() TableShape }); ok {
		return s.shape()
	}
	return TableShape{}
}

func (t *Table[K, V]) shape() TableShape {
	return TableShape{Kind: KindTable, KeyCodec: codecName(t.cfg.Keys), ValueCodec: codecName(t.cfg.Values)}
}

func (t *WindowedTable[K, V]) shape() TableShape {
	return TableShape{Kind: KindWindowed, KeyCodec: codecName(t.cfg.Keys), ValueCodec: codecName(t.cfg.Values),
		Windows: t.Windows(), Time: t.cfg.Time}
}

func (t *SetTable[K, M]) shape() TableShape {
	return TableShape{Kind: KindSet, KeyCodec: codecName(t.cfg.Keys), ValueCodec: codecName(t.cfg.Members)}
}

func (t *GlobalTable[K, V]) shape() TableShape {
	return TableShape{Kind: KindGlobal, KeyCodec: codecName(t.cfg.Keys), ValueCodec: codecName(t.cfg.Values)}
}

// codecName names a codec by its dynamic Go type ("" for none).
func codecName(c any) string {
	if c == nil {
		return ""
	}
	return reflect.TypeOf(c).String()
}
