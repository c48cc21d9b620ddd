package builtin

import (
	"errors"
	"testing"

	"github.com/edgetables/edgetables/manager"
)

// FuzzEventFields extracts keys (json:FIELD, subject:N) and numbers from any
// payload and subject, as the built-in tables do: errors wrap
// manager.ErrBadEvent, and a key is never empty.
func FuzzEventFields(f *testing.F) {
	f.Add("a.b", "s.x.y", []byte(`{"a":{"b":"k"}}`), uint8(2))
	f.Add("id", "s", []byte(`{"id":1e400}`), uint8(1))
	f.Add("id", "s..", []byte(`{"id":true}`), uint8(3))
	f.Add("v", "s", []byte(`{"v":[1]} trailing`), uint8(9))
	f.Add("x", "", []byte(`null`), uint8(0))
	f.Add("id", "s", []byte(`{"id":""}`), uint8(0))
	f.Fuzz(func(t *testing.T, path, subject string, data []byte, token uint8) {
		e := &manager.Event{Subject: subject, Data: data}
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, manager.ErrBadEvent) {
				t.Fatalf("%s of %q (subject %q): %v does not wrap ErrBadEvent", what, data, subject, err)
			}
		}
		if validPath(path) == nil {
			k, err := keyFunc(KeySpec{Field: path})(e)
			check("key json:"+path, err)
			if err == nil && len(k) == 0 {
				t.Fatalf("key json:%s of %q: empty", path, data)
			}
			_, err = numberField(e, path)
			check("number "+path, err)
		}
		if token > 0 {
			k, err := keyFunc(KeySpec{Token: int(token)})(e)
			check("key subject", err)
			if err == nil && (len(k) == 0 || string(k) != e.Token(int(token))) {
				t.Fatalf("key subject:%d of %q: %q", token, subject, k)
			}
		}
	})
}
