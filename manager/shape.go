package manager

import (
	"reflect"
	"strings"

	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/window"
)

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
	// value codec (a set's member codec), as reflect prints them: a codec
	// of another type may encode differently. The codecs of package codec
	// keep the names they had when they were types of this package
	// (codec.JSON[float64] is "manager.JSONCodec[float64]", codec.String
	// "manager.StringCodec"), the names apps recorded.
	KeyCodec, ValueCodec string
	// Windows and Time are a windowed table's windows (with defaults filled
	// in) and time source; zero for other kinds.
	Windows window.Windows
	Time    window.TimeSource
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

// codecPkg is the package path of package codec.
var codecPkg = reflect.TypeOf(codec.String{}).PkgPath()

// codecName names a codec by its dynamic Go type ("" for none). A codec of
// package codec is named as it was before the codecs left package manager
// (codec.X[T] is manager.XCodec[T]): apps record these names, so a new name
// would make every node refuse the tables of every app recorded before the
// move, and nodes of the two releases disagree.
func codecName(c any) string {
	if c == nil {
		return ""
	}
	t := reflect.TypeOf(c)
	name := t.String()
	if t.PkgPath() != codecPkg {
		return name
	}
	base, args, generic := strings.Cut(strings.TrimPrefix(name, "codec."), "[")
	if generic {
		args = "[" + args
	}
	return "manager." + base + "Codec" + args
}
