package tabletest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/tabletest"
	"github.com/edgetables/edgetables/manager/window"
)

// wordCount returns the README's word count: events on "words" carry one
// word each; the word is the key.
func wordCount() (*manager.Table[string, int64], manager.Agent) {
	counts := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "word-counts", Keys: codec.String{}, Values: codec.Int64{}})
	agent := manager.Agent{
		Name:     "count-words",
		Subjects: []string{"words"},
		Key:      func(e *manager.Event) ([]byte, error) { return e.Data, nil },
		Process: func(e *manager.Event) error {
			n, err := counts.Get(e, string(e.Key))
			if err != nil {
				return err
			}
			return counts.Set(e, string(e.Key), n+1)
		},
	}
	return counts, agent
}

// The README's word count, tested without a node: each Send is processed
// and committed before it returns.
func Example_wordCount() {
	counts, agent := wordCount()
	d, err := tabletest.New(tabletest.Config{
		Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()

	for _, w := range strings.Fields("the cat saw the dog and the bird") {
		if err := d.Send("words", []byte(w)); err != nil {
			fmt.Println(err)
			return
		}
	}
	ctx := context.Background()
	the, _, _ := counts.Lookup(ctx, "the")
	bird, _, _ := counts.Lookup(ctx, "bird")
	n, _ := d.Count("word-counts")
	fmt.Println("the:", the, "bird:", bird, "distinct words:", n)
	// Output: the: 3 bird: 1 distinct words: 6
}

// A windowed table with time moved by the test: readings are counted per
// device and minute; each window stays open one more minute, then
// OnWindowClose sees its final count.
func Example_windowedTable() {
	perMinute := manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
		Name: "readings-per-minute", Keys: codec.String{}, Values: codec.Int64{},
		Windows: window.Tumbling(time.Minute, time.Minute),
		OnWindowClose: func(e *manager.Event, device string, w window.Window, n int64) error {
			fmt.Println("closed", device, w.Start.Format("15:04"), "-", w.End.Format("15:04"), "count", n)
			return nil
		},
	})
	agent := manager.Agent{
		Name:     "count-readings",
		Subjects: []string{"readings.*"},
		Key:      func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			return perMinute.Update(e, string(e.Key), func(_ window.Window, n int64, _ bool) (int64, error) {
				return n + 1, nil
			})
		},
	}
	d, err := tabletest.New(tabletest.Config{
		Tables: []manager.Collection{perMinute}, Agents: []manager.Agent{agent},
		Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()

	_ = d.Send("readings.d1", nil) // 12:00:00
	_ = d.Advance(30 * time.Second)
	_ = d.Send("readings.d1", nil) // 12:00:30
	_ = d.Advance(40 * time.Second)
	_ = d.Send("readings.d1", nil) // 12:01:10: the next window

	ctx := context.Background()
	ws, _ := perMinute.LookupAll(ctx, "d1")
	for _, w := range ws {
		fmt.Println("open", w.Window.Start.Format("15:04"), w.Value)
	}
	fmt.Println("advance to 12:02:10")
	_ = d.Advance(time.Minute) // 12:02:10: the 12:00 window closes at 12:02
	ws, _ = perMinute.LookupAll(ctx, "d1")
	fmt.Println("open windows:", len(ws))
	// Output:
	// open 12:00 2
	// open 12:01 1
	// advance to 12:02:10
	// closed d1 12:00 - 12:01 count 2
	// open windows: 1
}

// A crash: what was committed survives, what was not is lost, and the
// events whose effects were lost are processed again after recovery.
func Example_crash() {
	counts, agent := wordCount()
	d, err := tabletest.New(tabletest.Config{
		Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent},
		ManualCommit: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	ctx := context.Background()
	show := func(when string) {
		the, _, _ := counts.Lookup(ctx, "the")
		fmt.Println(when+": the =", the)
	}

	_ = d.Send("words", []byte("the"))
	_ = d.Send("words", []byte("the"))
	_ = d.Commit()
	_ = d.Send("words", []byte("the")) // processed, not committed
	show("before the crash")

	_ = d.Crash() // stores lost; rebuilt from the changelog
	show("after recovery")

	_ = d.Process() // the uncommitted event again
	_ = d.Commit()
	show("after reprocessing")
	// Output:
	// before the crash: the = 2
	// after recovery: the = 2
	// after reprocessing: the = 3
}
