// Package window is the time arithmetic of windowed tables, pure and
// without I/O: how a table cuts time into windows (Windows, made with
// Tumbling or Hopping), which windows hold an instant and when each closes,
// where an event's time comes from (TimeSource), and the values windowed
// lookups return (Value, Entry, selected by Query).
//
// A windowed table is declared with manager.NewWindowedTable:
//
//	manager.WindowedTableConfig[string, int64]{
//		Name:    "per-minute",
//		Windows: window.Tumbling(time.Minute, 5*time.Minute),
//		Time:    window.TimeSource{Kind: window.TimeField, Name: "ts"},
//	}
package window
