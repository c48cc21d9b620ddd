package tabletest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
	"github.com/edgetables/edgetables/manager/tabletest"
	"github.com/edgetables/edgetables/manager/window"
)

var ctx = context.Background()

func newDriver(t *testing.T, cfg tabletest.Config) *tabletest.Driver {
	t.Helper()
	d, err := tabletest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// snapshot returns every committed word count as "word=n".
func snapshot(t *testing.T, d *tabletest.Driver, counts *manager.Table[string, int64]) []string {
	t.Helper()
	keys, err := d.Keys(counts.Name())
	must(t, err)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		n, found, err := counts.Lookup(ctx, k)
		must(t, err)
		if !found {
			t.Fatalf("key %q listed but not found", k)
		}
		out = append(out, fmt.Sprintf("%s=%d", k, n))
	}
	return out
}

// The README's word count (README.md, "Tables in Go").
func TestREADMEWordCount(t *testing.T) {
	counts, agent := wordCount()
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
	for _, w := range strings.Fields("the cat saw the dog and the bird") {
		must(t, d.Send("words", []byte(w)))
	}
	got := snapshot(t, d, counts)
	want := []string{"and=1", "bird=1", "cat=1", "dog=1", "saw=1", "the=3"}
	if !slices.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	// Each word was counted in its own partition, and committed there.
	parts := map[int]bool{}
	for _, w := range []string{"the", "cat", "saw", "dog", "and", "bird"} {
		_, p, err := d.Manager().Get(ctx, counts.Name(), []byte(w))
		must(t, err)
		if p != manager.PartitionOf([]byte(w), 8) {
			t.Errorf("%s in partition %d, want %d", w, p, manager.PartitionOf([]byte(w), 8))
		}
		parts[p] = true
	}
	if len(parts) < 2 {
		t.Errorf("words in %d partition(s): keys are not spread", len(parts))
	}
	// The changelog holds the committed changes: three of "the".
	var the []string
	for _, r := range d.Records(counts.Name()) {
		if string(r.Key) == "the" {
			n, _ := codec.Int64{}.Decode(r.Value)
			the = append(the, fmt.Sprint(n))
		}
	}
	if strings.Join(the, ",") != "1,2,3" {
		t.Errorf("changelog records of the: %v, want 1,2,3", the)
	}
	if dl := d.DeadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %v", dl)
	}
}

// Refused events go to the dead letters with their agent and reason, their
// writes dropped, and processing goes on.
func TestDeadLetters(t *testing.T) {
	counts := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "counts", Keys: codec.String{}, Values: codec.Int64{}})
	agent := manager.Agent{
		Name:     "counter",
		Subjects: []string{"in.>"},
		Key: func(e *manager.Event) ([]byte, error) {
			if e.Token(2) == "nokey" {
				return nil, errors.New("no key here")
			}
			return []byte(e.Token(2)), nil
		},
		Process: func(e *manager.Event) error {
			if err := counts.Set(e, string(e.Key), 1); err != nil { // dropped if refused
				return err
			}
			switch string(e.Data) {
			case "fail":
				return fmt.Errorf("%w: bad payload", manager.ErrBadEvent)
			case "panic":
				panic("boom")
			case "other":
				return counts.Set(e, "a-key-of-another-partition-"+string(e.Key), 1)
			case "big":
				return counts.Set(e, string(e.Key), 1<<40) // fine: 8 bytes
			}
			return nil
		},
	}
	for _, tc := range []struct {
		name, subject, data string
		reason              string // "" means accepted
	}{
		{"accepted", "in.k1", "ok", ""},
		{"key error", "in.nokey", "ok", "key: no key here"},
		{"agent error", "in.k2", "fail", "bad event: bad payload"},
		{"panic", "in.k3", "panic", "agent counter panicked: boom"},
		{"wrong partition", "in.k4", "other", "belongs to another partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
			must(t, d.Send(tc.subject, []byte(tc.data)))
			must(t, d.Send("in.after", []byte("ok"))) // processing goes on
			if n, _, _ := counts.Lookup(ctx, "after"); n != 1 {
				t.Errorf("the event after was not processed")
			}
			dls := d.DeadLetters()
			if tc.reason == "" {
				if len(dls) != 0 {
					t.Fatalf("dead letters %+v, want none", dls)
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1: %+v", len(dls), dls)
			}
			dl := dls[0]
			if dl.Agent != "counter" || !strings.Contains(dl.Reason, tc.reason) ||
				dl.Message.Subject != tc.subject || string(dl.Message.Data) != tc.data || dl.Message.Seq != 1 {
				t.Errorf("dead letter %+v, want agent counter, reason containing %q, message 1 %s %q", dl, tc.reason, tc.subject, tc.data)
			}
			if n, _ := d.Count("counts"); n != 1 {
				keys, _ := d.Keys("counts")
				t.Errorf("keys %v: the refused event's writes were kept", keys)
			}
		})
	}
}

// A value larger than MaxRecordBytes could never be committed: the event is
// refused for a limit.
func TestDeadLetterLimit(t *testing.T) {
	blobs := manager.NewTable(manager.TableConfig[string, string]{
		Name: "blobs", Keys: codec.String{}, Values: codec.String{}})
	agent := manager.Agent{Name: "store", Subjects: []string{"blob"},
		Key: func(e *manager.Event) ([]byte, error) { return []byte("k"), nil },
		Process: func(e *manager.Event) error {
			return blobs.Set(e, "k", string(e.Data))
		}}
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{blobs}, Agents: []manager.Agent{agent}, MaxRecordBytes: 100})
	must(t, d.Send("blob", []byte(strings.Repeat("x", 50))))
	must(t, d.Send("blob", []byte(strings.Repeat("y", 200))))
	v, _, _ := blobs.Lookup(ctx, "k")
	if v != strings.Repeat("x", 50) {
		t.Errorf("value %q: the oversized write was kept", v)
	}
	dls := d.DeadLetters()
	if len(dls) != 1 || dls[0].Message.Seq != 2 || !strings.Contains(dls[0].Reason, "100") {
		t.Errorf("dead letters %+v, want event 2 refused for the 100-byte limit", dls)
	}
}

// minuteCounts is a windowed count per key and minute, closing each window
// a minute after its end; closed windows' counts go to a plain table.
func minuteCounts(closes *[]string) (*manager.WindowedTable[string, int64], *manager.Table[string, int64], manager.Agent) {
	final := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "final", Keys: codec.String{}, Values: codec.Int64{}})
	perMinute := manager.NewWindowedTable(manager.WindowedTableConfig[string, int64]{
		Name: "per-minute", Keys: codec.String{}, Values: codec.Int64{},
		Windows: window.Tumbling(time.Minute, time.Minute),
		OnWindowClose: func(e *manager.Event, k string, w window.Window, n int64) error {
			*closes = append(*closes, fmt.Sprintf("%s@%s=%d", k, w.Start.Format("15:04"), n))
			sum, err := final.Get(e, k)
			if err != nil {
				return err
			}
			return final.Set(e, k, sum+n)
		},
	})
	agent := manager.Agent{Name: "count", Subjects: []string{"ev.*"},
		Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			return perMinute.Update(e, string(e.Key), func(_ window.Window, n int64, _ bool) (int64, error) { return n + 1, nil })
		}}
	return perMinute, final, agent
}

var noon = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Windows close when the clock passes their end plus Expires, not before,
// and OnWindowClose's writes are committed.
func TestWindowsCloseOnAdvance(t *testing.T) {
	var closes []string
	perMinute, final, agent := minuteCounts(&closes)
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{perMinute, final}, Agents: []manager.Agent{agent}, Start: noon})
	must(t, d.Send("ev.a", nil))
	must(t, d.Send("ev.a", nil))
	must(t, d.Send("ev.b", nil))
	// Stream time given explicitly: 12:01:30, in the next window.
	must(t, d.SendMessages(tabletest.Message{Subject: "ev.a", Time: noon.Add(90 * time.Second)}))

	must(t, d.Advance(2*time.Minute-time.Nanosecond)) // 12:01:59.999999999: the 12:00 window closes at 12:02
	if len(closes) != 0 {
		t.Fatalf("closed early: %v", closes)
	}
	if n, _ := d.Count("per-minute"); n != 3 {
		t.Fatalf("%d windows, want 3", n)
	}
	must(t, d.Advance(time.Nanosecond))
	if want := []string{"a@12:00=2", "b@12:00=1"}; !slices.Equal(closes, want) {
		t.Fatalf("closes %v, want %v", closes, want)
	}
	ws, err := perMinute.LookupAll(ctx, "a")
	must(t, err)
	if len(ws) != 1 || !ws[0].Window.Start.Equal(noon.Add(time.Minute)) || ws[0].Value != 1 {
		t.Fatalf("windows of a %+v, want only 12:01 with 1", ws)
	}
	if n, _, _ := final.Lookup(ctx, "a"); n != 2 {
		t.Errorf("final a = %d, want 2", n)
	}
	must(t, d.Advance(time.Minute))
	if n, _, _ := final.Lookup(ctx, "a"); n != 3 || len(closes) != 3 {
		t.Errorf("final a = %d after %v, want 3", n, closes)
	}
	if n, _ := d.Count("per-minute"); n != 0 {
		t.Errorf("%d windows left", n)
	}
}

// A crash loses what was not committed, keeps what was, and the events
// whose effects were lost are processed again.
func TestCrashRecovers(t *testing.T) {
	counts, agent := wordCount()
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}, ManualCommit: true})
	for _, w := range strings.Fields("a b c a") {
		must(t, d.Send("words", []byte(w)))
	}
	must(t, d.Commit())
	committed := snapshot(t, d, counts)
	for _, w := range strings.Fields("a d d") {
		must(t, d.Send("words", []byte(w)))
	}
	if got := snapshot(t, d, counts); !slices.Equal(got, committed) {
		t.Fatalf("reads see uncommitted state: %v, committed %v", got, committed)
	}
	must(t, d.Crash())
	if got := snapshot(t, d, counts); !slices.Equal(got, committed) {
		t.Fatalf("after the crash %v, want the committed %v", got, committed)
	}
	must(t, d.Process())
	must(t, d.Commit())
	want := []string{"a=3", "b=1", "c=1", "d=2"}
	if got := snapshot(t, d, counts); !slices.Equal(got, want) {
		t.Fatalf("after reprocessing %v, want %v", got, want)
	}
	// A clean restart keeps everything, and processes nothing twice.
	must(t, d.Restart())
	must(t, d.Process())
	if got := snapshot(t, d, counts); !slices.Equal(got, want) {
		t.Fatalf("after a restart %v, want %v", got, want)
	}
}

// Crashes at random points of a random stream: after each, the tables are
// exactly what was last committed, and the final state is that of a run
// without crashes.
func TestCrashRandom(t *testing.T) {
	words := strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa")
	run := func(seed uint64, crash bool) []string {
		rng := rand.New(rand.NewPCG(seed, 1))
		counts, agent := wordCount()
		d := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent},
			ManualCommit: true})
		var committed []string
		for range 2000 {
			switch r := rng.IntN(100); {
			case r < 3:
				must(t, d.Commit())
				committed = snapshot(t, d, counts)
			case r < 5:
				if !crash {
					continue
				}
				must(t, d.Crash())
				if got := snapshot(t, d, counts); !slices.Equal(got, committed) {
					t.Fatalf("seed %d: after a crash %v, committed before %v", seed, got, committed)
				}
			default:
				must(t, d.Send("words", []byte(words[rng.IntN(len(words))])))
			}
		}
		must(t, d.Process())
		must(t, d.Commit())
		out := snapshot(t, d, counts)
		must(t, d.Close())
		return out
	}
	for seed := range uint64(5) {
		want, got := run(seed, false), run(seed, true)
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: with crashes %v, without %v", seed, got, want)
		}
	}
}

// CommitEvery commits by count, as on a node, even with ManualCommit.
func TestCommitEvery(t *testing.T) {
	counts, agent := wordCount()
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent},
		ManualCommit: true, CommitEvery: 2})
	for _, w := range strings.Fields("a b c") {
		must(t, d.Send("words", []byte(w)))
	}
	must(t, d.Crash())
	if got, want := snapshot(t, d, counts), []string{"a=1", "b=1"}; !slices.Equal(got, want) {
		t.Fatalf("after the crash %v, want %v (the first two committed by count)", got, want)
	}
}

// A window closed and not committed when the node crashes is closed again
// after recovery: OnWindowClose runs twice, its table writes count once.
func TestCrashBeforeCloseCommitted(t *testing.T) {
	var closes []string
	perMinute, final, agent := minuteCounts(&closes)
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{perMinute, final}, Agents: []manager.Agent{agent},
		Start: noon, ManualCommit: true})
	must(t, d.Send("ev.a", nil))
	must(t, d.Commit())
	must(t, d.Advance(3*time.Minute)) // closes, not committed
	if len(closes) != 1 {
		t.Fatalf("closes %v, want one", closes)
	}
	must(t, d.Crash())
	if n, _ := d.Count("per-minute"); n != 1 {
		t.Fatalf("%d windows after the crash, want the uncommitted close undone", n)
	}
	must(t, d.Commit()) // the closing pass of the recovered node
	if len(closes) != 2 || closes[1] != closes[0] {
		t.Fatalf("closes %v, want the same window closed again", closes)
	}
	if n, _, _ := final.Lookup(ctx, "a"); n != 1 {
		t.Errorf("final a = %d, want 1: the close's writes counted once", n)
	}
	if n, _ := d.Count("per-minute"); n != 0 {
		t.Errorf("%d windows left", n)
	}
}

// Set and global tables work under the driver, across a crash.
func TestSetAndGlobalTables(t *testing.T) {
	devices := manager.NewSetTable(manager.SetTableConfig[string, string]{
		Name: "devices", Keys: codec.String{}, Members: codec.String{}})
	limits := manager.NewGlobalTable(manager.TableConfig[string, int64]{
		Name: "limits", Keys: codec.String{}, Values: codec.Int64{},
		Default: func() int64 { return 2 }})
	agent := manager.Agent{Name: "site-devices", Subjects: []string{"sites.*.*"},
		Key: func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			limit, err := limits.Get(string(e.Key))
			if err != nil {
				return err
			}
			ms, err := devices.Members(e, string(e.Key))
			if err != nil {
				return err
			}
			if int64(len(ms)) >= limit {
				return fmt.Errorf("site %s is full", e.Key)
			}
			return devices.Add(e, string(e.Key), e.Token(3))
		}}
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{devices, limits}, Agents: []manager.Agent{agent}})
	must(t, limits.Set(ctx, "s2", 3))
	for _, s := range []string{"sites.s1.d1", "sites.s1.d2", "sites.s1.d3", "sites.s2.d1", "sites.s2.d2", "sites.s2.d3"} {
		must(t, d.Send(s, nil))
	}
	check := func(when string) {
		t.Helper()
		s1, _, err := devices.Lookup(ctx, "s1")
		must(t, err)
		s2, _, err := devices.Lookup(ctx, "s2")
		must(t, err)
		if fmt.Sprint(s1, s2) != "[d1 d2] [d1 d2 d3]" {
			t.Errorf("%s: s1 %v s2 %v", when, s1, s2)
		}
		if v, _ := limits.Get("s2"); v != 3 {
			t.Errorf("%s: limit of s2 %d", when, v)
		}
	}
	check("before the crash")
	if dls := d.DeadLetters(); len(dls) != 1 || dls[0].Reason != "site s1 is full" {
		t.Errorf("dead letters %+v", dls)
	}
	must(t, d.Crash())
	check("after the crash")
}

func TestClosed(t *testing.T) {
	counts, agent := wordCount()
	d, err := tabletest.New(tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
	must(t, err)
	must(t, d.Close())
	must(t, d.Close())
	if err := d.Send("words", []byte("x")); !errors.Is(err, tabletest.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	// The tables are free for another driver, which starts empty.
	d2 := newDriver(t, tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
	if n, _ := d2.Count("word-counts"); n != 0 {
		t.Errorf("%d keys in a new driver", n)
	}
	if _, err := tabletest.New(tabletest.Config{}); err == nil {
		t.Error("New without agents: no error")
	}
}

// A step of the clock ahead of more than MaxClockSkew (default an hour) is
// not followed at once: windows close by the clock as it ran, until the
// step has lasted the skew by the monotonic clock.
func TestClockJump(t *testing.T) {
	var closes []string
	perMinute, final, agent := minuteCounts(&closes)
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{perMinute, final}, Agents: []manager.Agent{agent}, Start: noon})
	must(t, d.Send("ev.a", nil))
	d.SetClock(noon.Add(3 * time.Hour))
	must(t, d.Commit())
	if len(closes) != 0 {
		t.Fatalf("a jump of 3h closed %v at once", closes)
	}
	must(t, d.Advance(90*time.Second)) // the closing clock: 12:01:30
	if len(closes) != 0 {
		t.Fatalf("closed %v at 12:01:30 by the closing clock", closes)
	}
	must(t, d.Advance(time.Minute)) // 12:02:30: the 12:00 window is due
	if want := []string{"a@12:00=1"}; !slices.Equal(closes, want) {
		t.Fatalf("closes %v, want %v", closes, want)
	}
	if !d.Now().Equal(noon.Add(3*time.Hour + 150*time.Second)) {
		t.Errorf("Now %s", d.Now())
	}
}

// Agents see the message as sent: subject, data, headers, stream time and
// source sequence.
func TestEventFields(t *testing.T) {
	seen := manager.NewTable(manager.TableConfig[string, string]{
		Name: "seen", Keys: codec.String{}, Values: codec.String{}})
	agent := manager.Agent{Name: "record", Subjects: []string{"a.*"},
		Process: func(e *manager.Event) error { // Key nil: the subject is the key
			return seen.Set(e, e.Subject, fmt.Sprintf("%s %s %v %d %s", e.Key, e.Data, e.Header["X-Site"],
				e.Seq, e.Time.Format(time.RFC3339)))
		}}
	d := newDriver(t, tabletest.Config{Tables: []manager.Collection{seen}, Agents: []manager.Agent{agent}, Start: noon})
	must(t, d.Send("a.one", []byte("1")))
	must(t, d.SendMessages(tabletest.Message{Subject: "a.two", Data: []byte("2"),
		Header: map[string][]string{"X-Site": {"s1"}}, Time: noon.Add(-time.Hour)}))
	must(t, d.Send("b.ignored", nil)) // no agent reads it
	for k, want := range map[string]string{
		"a.one": "a.one 1 [] 1 2026-03-01T12:00:00Z",
		"a.two": "a.two 2 [s1] 2 2026-03-01T11:00:00Z",
	} {
		if got, _, _ := seen.Lookup(ctx, k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}
