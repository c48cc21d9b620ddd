package manager_test

import (
	"strings"
	"testing"

	"github.com/edgetables/edgetables/manager"
)

// TestEventJSON: a payload is read as one JSON object of valid UTF-8, or
// refused with a reason (the event then goes to the dead letters).
func TestEventJSON(t *testing.T) {
	for _, tc := range []struct {
		name, data, err string
	}{
		{"object", `{"id":"a","v":1}`, ""},
		{"spaces around", " \n{\"id\":\"a\"}\t\n", ""},
		{"a C string's NUL", "{\"id\":\"a\"}\x00", ""},
		{"unicode", `{"id":"ü✓"}`, ""},
		{"array", `[1,2]`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"empty", ``, "not a JSON object"},
		{"truncated", `{"id":`, "not a JSON object"},
		{"a second object", `{"id":"a"}{"id":"b"}`, "data after the object"},
		{"trailing garbage", `{"id":"a"} x`, "data after the object"},
		{"invalid UTF-8 in a value", "{\"id\":\"dev\xff\"}", "not valid UTF-8"},
		{"invalid UTF-8 in a name", "{\"i\xfed\":\"a\"}", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &manager.Event{Data: []byte(tc.data)}
			doc, err := e.JSON()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("JSON() = %v", err)
			case tc.err == "" && doc == nil:
				t.Fatal("JSON() = nil document, no error")
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("JSON() error = %v; want one saying %q", err, tc.err)
			case tc.err != "" && doc != nil:
				t.Fatalf("JSON() = %v with error %v; want no document", doc, err)
			}
		})
	}
}
