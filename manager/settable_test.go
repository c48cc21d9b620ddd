package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// setSetup declares a set table "tags" whose agent adds or discards the
// "tag" of events on ev.KEY, by their "op".
func setSetup(h *harness, tags **manager.SetTable[string, string]) {
	h.setup = func(m *manager.TableManager) {
		t := manager.NewSetTable(manager.SetTableConfig[string, string]{
			Name: "tags", Keys: codec.String{}, Members: codec.String{}, MaxMembers: 3})
		*tags = t
		must(h.t, m.Add(t))
		must(h.t, m.AddAgent(manager.Agent{
			Name: "tag", Subjects: []string{"ev.*"},
			Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
			Process: func(e *manager.Event) error {
				var ev struct{ Op, Tag string }
				if err := json.Unmarshal(e.Data, &ev); err != nil {
					return err
				}
				if ev.Op == "discard" {
					return t.Discard(e, string(e.Key), ev.Tag)
				}
				return t.Add(e, string(e.Key), ev.Tag)
			},
		}))
	}
}

func waitSet(t *testing.T, tags *manager.SetTable[string, string], key string, want []string) {
	t.Helper()
	var got []string
	var found bool
	var err error
	ok := poll(20*time.Second, func() bool {
		got, found, err = tags.Lookup(context.Background(), key)
		return err == nil && found == (len(want) > 0) && fmt.Sprint(got) == fmt.Sprint(want)
	})
	if !ok {
		t.Fatalf("set %q = %v (found %v, err %v), want %v", key, got, found, err, want)
	}
}

func TestSetTableAddDiscardRestart(t *testing.T) {
	// One commit holds many adds and discards of the same keys: they
	// coalesce into one set per key.
	h := newHarness(t, manager.Config{CommitInterval: 300 * time.Millisecond, CommitIdle: -1})
	var tags *manager.SetTable[string, string]
	setSetup(h, &tags)
	h.start()
	ev := func(key, op, tag string) {
		h.publish("ev."+key, []byte(fmt.Sprintf(`{"op": %q, "tag": %q}`, op, tag)))
	}
	ev("a", "add", "red")
	ev("a", "add", "blue")
	ev("a", "add", "red") // twice is once
	ev("b", "add", "green")
	ev("a", "add", "green")
	ev("a", "discard", "blue")
	ev("c", "add", "x")
	ev("c", "discard", "x") // empty: the key is gone
	ev("d", "add", "1")
	ev("d", "add", "2")
	ev("d", "add", "3")
	ev("d", "add", "4") // over MaxMembers: refused, to the dead-letter subject
	waitSet(t, tags, "a", []string{"green", "red"})
	waitSet(t, tags, "b", []string{"green"})
	waitSet(t, tags, "c", nil)
	waitSet(t, tags, "d", []string{"1", "2", "3"})
	waitFor(t, 10*time.Second, "full set refused", func() bool { return h.m.Status().DeadLetters["tag"] == 1 })

	check := func() {
		t.Helper()
		waitSet(t, tags, "a", []string{"green", "red"})
		waitSet(t, tags, "b", []string{"green"})
		waitSet(t, tags, "c", nil)
		waitSet(t, tags, "d", []string{"1", "2", "3"})
	}
	// A restart on the same stores, then one replaying the whole changelog.
	must(t, h.stop())
	h.start()
	check()
	must(t, h.stop())
	must(t, os.RemoveAll(h.dir))
	h.start()
	check()
	ev("a", "discard", "red")
	ev("b", "add", "blue")
	waitSet(t, tags, "a", []string{"green"})
	waitSet(t, tags, "b", []string{"blue", "green"})
}
