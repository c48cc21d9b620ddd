package edge

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/edge/builtin"
	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// TestPlanApp: what a node does with the recorded metadata, for each way
// its tables can differ from it.
func TestPlanApp(t *testing.T) {
	then := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := then.Add(time.Hour)
	table := func(agg string) jetstream.TableMeta {
		return jetstream.TableMeta{Kind: manager.KindTable, Spec: map[string]string{"source": "s.*", "key": "subject:2", "agg": agg},
			KeyCodec: "manager.StringCodec", ValueCodec: "manager.JSONCodec[int64]"}
	}
	recorded := func(agg string) jetstream.TableMeta {
		t := table(agg)
		t.Added, t.AddedBy = then, "n0"
		return t
	}
	undeclared := func(agg string) jetstream.TableMeta {
		t := recorded(agg)
		t.Undeclared, t.UndeclaredBy = then, "n2"
		return t
	}
	cases := []struct {
		name     string
		recorded map[string]jetstream.TableMeta
		declared map[string]jetstream.TableMeta
		reset    []string
		// wantErr lists what the refusal names; else the plan's lists.
		wantErr                         []string
		notInErr                        []string
		added, claimed, newlyUndeclared []string
		changed                         bool
		notes                           []string
		check                           func(t *testing.T, doc jetstream.AppMeta)
	}{
		{name: "same tables", recorded: map[string]jetstream.TableMeta{"a": recorded("count")},
			declared: map[string]jetstream.TableMeta{"a": table("count")}},
		{name: "a new table", recorded: map[string]jetstream.TableMeta{"a": recorded("count")},
			declared: map[string]jetstream.TableMeta{"a": table("count"), "b": table("sum")},
			added:    []string{"b"}, changed: true,
			check: func(t *testing.T, doc jetstream.AppMeta) {
				if b := doc.Tables["b"]; !b.Added.Equal(now) || b.AddedBy != "n1" || b.Spec["agg"] != "sum" {
					t.Errorf("b recorded as %+v", b)
				}
				if a := doc.Tables["a"]; !a.Added.Equal(then) {
					t.Errorf("a changed: %+v", a)
				}
			}},
		{name: "changed spec", recorded: map[string]jetstream.TableMeta{"a": recorded("sum")},
			declared: map[string]jetstream.TableMeta{"a": table("max")},
			wantErr:  []string{"table a:", "agg sum → max", "agg=sum", "agg=max", "--reset-table a", "new name"}},
		{name: "changed codec", recorded: map[string]jetstream.TableMeta{"a": recorded("sum")},
			declared: map[string]jetstream.TableMeta{"a": func() jetstream.TableMeta {
				t := table("sum")
				t.ValueCodec = "manager.Int64Codec"
				return t
			}()},
			wantErr: []string{"table a:", "value codec manager.JSONCodec[int64] → manager.Int64Codec"}},
		{name: "global to table", recorded: map[string]jetstream.TableMeta{"g": func() jetstream.TableMeta {
			t := recorded("")
			t.Kind, t.Spec = manager.KindGlobal, map[string]string{"kind": "global", "values": "json"}
			return t
		}()},
			declared: map[string]jetstream.TableMeta{"g": table("count")},
			wantErr:  []string{"table g:", "recorded: kind=global,values=json,", "kind global → table", "values json → (none)"},
			notInErr: []string{"kind=global,kind=global", "kind global → (none)"}},
		{name: "two refusals", recorded: map[string]jetstream.TableMeta{"a": recorded("sum"), "b": undeclared("count")},
			declared: map[string]jetstream.TableMeta{"a": table("avg"), "b": table("count")},
			wantErr:  []string{"table a:", "table b: declared again", "missed the events"}},
		{name: "a table no longer declared", recorded: map[string]jetstream.TableMeta{"a": recorded("count"), "b": recorded("sum")},
			declared:        map[string]jetstream.TableMeta{"a": table("count")},
			newlyUndeclared: []string{"b"}, changed: true,
			check: func(t *testing.T, doc jetstream.AppMeta) {
				if b := doc.Tables["b"]; !b.Undeclared.Equal(now) || b.UndeclaredBy != "n1" {
					t.Errorf("b recorded as %+v", b)
				}
			}},
		{name: "still not declared", recorded: map[string]jetstream.TableMeta{"a": recorded("count"), "b": undeclared("sum")},
			declared: map[string]jetstream.TableMeta{"a": table("count")},
			notes:    []string{"table b is recorded in app app but not declared"}},
		{name: "declared again", recorded: map[string]jetstream.TableMeta{"b": undeclared("sum")},
			declared: map[string]jetstream.TableMeta{"b": table("sum")},
			wantErr:  []string{"table b: declared again", "since 2026-12-01T10:00:00Z (first node n2)", "--reset-table b"}},
		{name: "reset of a changed spec", recorded: map[string]jetstream.TableMeta{"a": recorded("sum")},
			declared: map[string]jetstream.TableMeta{"a": table("avg")}, reset: []string{"a"},
			claimed: []string{"a"}, changed: true,
			check: func(t *testing.T, doc jetstream.AppMeta) {
				a := doc.Tables["a"]
				if a.Spec["agg"] != "avg" || a.Resets != 1 || a.Reset == nil || a.Reset.Done || a.Reset.By != "n1" || !a.Added.Equal(now) {
					t.Errorf("a recorded as %+v, reset %+v", a, a.Reset)
				}
			}},
		{name: "reset of a table declared again", recorded: map[string]jetstream.TableMeta{"b": undeclared("sum")},
			declared: map[string]jetstream.TableMeta{"b": table("sum")}, reset: []string{"b"},
			claimed: []string{"b"}, changed: true,
			check: func(t *testing.T, doc jetstream.AppMeta) {
				if b := doc.Tables["b"]; !b.Undeclared.IsZero() || b.Resets != 1 {
					t.Errorf("b recorded as %+v", b)
				}
			}},
		{name: "reset of an unchanged table", recorded: map[string]jetstream.TableMeta{"a": recorded("sum")},
			declared: map[string]jetstream.TableMeta{"a": table("sum")}, reset: []string{"a"},
			notes: []string{"--reset-table a: the table has the recorded spec", "nothing to reset"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := jetstream.AppMeta{Version: 1, App: "app", Partitions: 4, Tables: c.recorded}
			cfg := &Config{App: "app", Name: "n1", ResetTables: c.reset}
			plan, err := planApp(doc, cfg, c.declared, now)
			if c.wantErr != nil {
				if !errors.Is(err, ErrAppShape) {
					t.Fatalf("planApp = %v, want ErrAppShape", err)
				}
				mustMention(t, err.Error(), c.wantErr...)
				for _, no := range c.notInErr {
					if strings.Contains(err.Error(), no) {
						t.Errorf("%q is in:\n%s", no, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.changed != c.changed || !slices.Equal(plan.added, c.added) || !slices.Equal(plan.claimed, c.claimed) ||
				!slices.Equal(plan.undeclared, c.newlyUndeclared) {
				t.Errorf("plan changed %v added %v claimed %v undeclared %v", plan.changed, plan.added, plan.claimed, plan.undeclared)
			}
			mustMention(t, strings.Join(plan.notes, "\n"), c.notes...)
			if len(c.notes) == 0 && len(plan.notes) > 0 {
				t.Errorf("notes %q", plan.notes)
			}
			if c.check != nil {
				c.check(t, plan.doc)
			}
			if len(doc.Tables) != len(c.recorded) {
				t.Error("planApp changed the document it was given")
			}
		})
	}
}

// TestDeclaredCodecNamesAsRecorded: a table whose value type moved package
// (the avg aggregation's Average, from edge to edge/builtin) is declared
// with the codec name apps recorded before the move, so that an app
// recorded then is not refused and nodes of either release agree.
func TestDeclaredCodecNamesAsRecorded(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"name=a,source=s.*,key=subject:2,agg=avg,field=v", "manager.JSONCodec[github.com/edgetables/edgetables/edge.Average]"},
		{"name=a,source=s.*,key=subject:2,agg=avg,field=v,window=1m", "manager.JSONCodec[github.com/edgetables/edgetables/edge.Average]"},
		{"name=a,source=s.*,key=subject:2,agg=max,field=v", "manager.JSONCodec[float64]"},
	} {
		s, err := builtin.ParseTableSpec(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		table, _, err := builtin.Builtin(s)
		if err != nil {
			t.Fatal(err)
		}
		got := declaredTables([]manager.Collection{table})["a"]
		if got.ValueCodec != c.want || got.KeyCodec != "manager.StringCodec" {
			t.Errorf("%s: codecs %s, %s; want manager.StringCodec, %s", c.spec, got.KeyCodec, got.ValueCodec, c.want)
		}
	}
}
