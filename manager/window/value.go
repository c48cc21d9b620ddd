package window

import (
	"time"
)

// Value is the value of one window of a key, as a windowed table's lookups
// return it.
type Value[V any] struct {
	Window Window
	Value  V
}

// Query selects windows of a key: All open windows, or the most
// recent window containing At (the table's clock when At is zero).
type Query struct {
	All bool
	At  time.Time
}

// Entry is one committed window of a key, its value encoded, as
// manager.TableManager.Windows returns it and the HTTP API serves it (the
// window's start and end beside "value").
type Entry struct {
	Window
	Value []byte `json:"value"`
}
