package edge

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// ErrAppShape is wrapped by the error of Node.Run when the node does not
// fit the app's recorded metadata (jetstream.AppMeta, in the KV bucket
// <app>_meta): another partition count than the app was created with, a
// table whose spec changed, a table declared again after nodes ran without
// it, or metadata of a later version. Run returns it before it touches any
// stream, store or group state. The error says what was recorded, what the
// node declares, and the way out.
var ErrAppShape = errors.New("the node does not fit the app's recorded shape")

// shapeError is an error wrapping ErrAppShape (and cause, if any) whose
// message is its own.
type shapeError struct {
	msg   string
	cause error
}

func (e *shapeError) Error() string { return e.msg }

func (e *shapeError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrAppShape}
	}
	return []error{ErrAppShape, e.cause}
}

func shapeErrorf(format string, args ...any) error {
	return &shapeError{msg: fmt.Sprintf(format, args...)}
}

// appPlan is what a node does to the app's metadata at start: the document
// to store if changed, and what it logs.
type appPlan struct {
	doc     jetstream.AppMeta
	changed bool
	// added are the tables this node records for the first time, claimed
	// those whose reset it claims, undeclared those it records as no
	// longer declared.
	added, claimed, undeclared []string
	// notes are warnings to log once the metadata is settled.
	notes []string
}

// planApp compares the recorded document with the node's configuration
// (declared: the shape of every table it declares) and returns the plan,
// or an error wrapping ErrAppShape naming every table it refuses. It does
// not check the partition count (see partitionsError) nor pending resets.
func planApp(doc jetstream.AppMeta, cfg *Config, declared map[string]jetstream.TableMeta, now time.Time) (appPlan, error) {
	plan := appPlan{doc: doc}
	plan.doc.Tables = maps.Clone(doc.Tables)
	if plan.doc.Tables == nil {
		plan.doc.Tables = map[string]jetstream.TableMeta{}
	}
	var refused []error
	for _, name := range slices.Sorted(maps.Keys(declared)) {
		dec := declared[name]
		rec, ok := doc.Tables[name]
		reset := slices.Contains(cfg.ResetTables, name)
		diff := shapeDiff(rec, dec)
		switch {
		case !ok:
			dec.Added, dec.AddedBy = now, cfg.Name
			plan.doc.Tables[name] = dec
			plan.added = append(plan.added, name)
		case len(diff) == 0 && rec.Undeclared.IsZero():
			if reset {
				plan.notes = append(plan.notes, fmt.Sprintf("--reset-table %s: the table has the recorded spec%s; nothing to reset: remove the flag "+
					"(left in place, it would also accept the next change of the table's spec)", name, lastReset(rec)))
			}
		case reset:
			dec.Added, dec.AddedBy = now, cfg.Name
			dec.Resets = rec.Resets + 1
			dec.Reset = &jetstream.TableReset{At: now, By: cfg.Name}
			plan.doc.Tables[name] = dec
			plan.claimed = append(plan.claimed, name)
		case !rec.Undeclared.IsZero():
			refused = append(refused, redeclaredError(cfg.App, name, rec, dec, diff))
		default:
			refused = append(refused, specChangedError(cfg.App, name, rec, dec, diff))
		}
	}
	if len(refused) > 0 {
		return appPlan{}, errors.Join(refused...)
	}
	for _, name := range slices.Sorted(maps.Keys(doc.Tables)) {
		if _, ok := declared[name]; ok {
			continue
		}
		rec := doc.Tables[name]
		if rec.Undeclared.IsZero() {
			rec.Undeclared, rec.UndeclaredBy = now, cfg.Name
			plan.doc.Tables[name] = rec
			plan.undeclared = append(plan.undeclared, name)
			continue
		}
		plan.notes = append(plan.notes, fmt.Sprintf("table %s is recorded in app %s but not declared (since %s, first by node %s): "+
			"its records stay in the changelog; declaring it again needs --reset-table %s", name, cfg.App,
			rec.Undeclared.Format(time.RFC3339), rec.UndeclaredBy, name))
	}
	plan.changed = len(plan.added)+len(plan.claimed)+len(plan.undeclared) > 0
	return plan, nil
}

// pendingReset returns a table whose reset is claimed but not done, and
// the node that claimed it ("" when none).
func pendingReset(doc jetstream.AppMeta) (table, by string) {
	for _, name := range slices.Sorted(maps.Keys(doc.Tables)) {
		if r := doc.Tables[name].Reset; r != nil && !r.Done {
			return name, r.By
		}
	}
	return "", ""
}

// partitionsError is the refusal of a node whose partition count is not the
// app's.
func partitionsError(app string, declared, recorded int, where string) error {
	return shapeErrorf("--partitions %d: the app %s was created with %d partitions (%s); every node of it must run with --partitions %d. "+
		"A key's partition is its hash modulo the count, so another count would move keys between partitions. "+
		"To change the count, create a new app (--app NEW_NAME) and feed it again; see \"Changing an app\" in the README",
		declared, app, recorded, where, recorded)
}

// specChangedError is the refusal of a table whose shape differs from the
// recorded one.
func specChangedError(app, name string, rec, dec jetstream.TableMeta, diff []string) error {
	return shapeErrorf("table %s: its spec differs from the one app %s recorded, and the values it holds were made by the recorded one\n"+
		"  recorded: %s (added %s by node %s)\n"+
		"  declared: %s\n"+
		"  changed:  %s\n"+
		"  way out:  give the changed table a new name (the old one's records stay in the changelog), "+
		"or reset it: start one node with --reset-table %s, which drops its records from the changelog of every partition and "+
		"the stores of every node, records the new spec, and starts it empty from the current source position",
		name, app, formatShape(rec), rec.Added.Format(time.RFC3339), rec.AddedBy, formatShape(dec), strings.Join(diff, "; "), name)
}

// redeclaredError is the refusal of a table declared again after nodes ran
// without it.
func redeclaredError(app, name string, rec, dec jetstream.TableMeta, diff []string) error {
	changed := ""
	if len(diff) > 0 {
		changed = fmt.Sprintf("\n  declared: %s\n  changed:  %s", formatShape(dec), strings.Join(diff, "; "))
	}
	return shapeErrorf("table %s: declared again, but nodes of app %s ran without it since %s (first node %s), so it missed the events in between\n"+
		"  recorded: %s (added %s by node %s)%s\n"+
		"  way out:  reset it: start one node with --reset-table %s, which drops its records from the changelog of every partition and "+
		"the stores of every node, and starts it empty from the current source position; or give it a new name",
		name, app, rec.Undeclared.Format(time.RFC3339), rec.UndeclaredBy, formatShape(rec), rec.Added.Format(time.RFC3339), rec.AddedBy,
		changed, name)
}

// lastReset describes a table's last reset for a note ("" when none).
func lastReset(rec jetstream.TableMeta) string {
	if rec.Reset == nil {
		return ""
	}
	return fmt.Sprintf(" (reset by node %s at %s)", rec.Reset.By, rec.Reset.At.Format(time.RFC3339))
}

// specOrder is the order in which specs are shown: a built-in table's
// parts as the CLI writes them, then any other key.
var specOrder = []string{"source", "key", "agg", "field", "window", "hop", "expires", "time"}

// specKeys returns the keys of spec in specOrder, then the others sorted.
func specKeys(specs ...map[string]string) []string {
	seen := map[string]bool{}
	for _, s := range specs {
		for k := range s {
			seen[k] = true
		}
	}
	var keys []string
	for _, k := range specOrder {
		if seen[k] {
			keys = append(keys, k)
			delete(seen, k)
		}
	}
	return append(keys, slices.Sorted(maps.Keys(seen))...)
}

// formatShape writes a table's shape on one line: kind, spec, codecs.
func formatShape(t jetstream.TableMeta) string {
	parts := []string{"kind=" + string(t.Kind)}
	for _, k := range specKeys(t.Spec) {
		if kindInSpec(t, k) {
			continue
		}
		parts = append(parts, k+"="+t.Spec[k])
	}
	parts = append(parts, "keys="+t.KeyCodec, "values="+t.ValueCodec)
	return strings.Join(parts, ",")
}

// shapeDiff lists what differs between a recorded and a declared table:
// kind, spec parts, codecs ("agg sum → avg"); nothing when they match.
// Added, Undeclared and the resets are not compared.
func shapeDiff(rec, dec jetstream.TableMeta) []string {
	var d []string
	change := func(what, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s %s → %s", what, orNone(a), orNone(b)))
		}
	}
	change("kind", string(rec.Kind), string(dec.Kind))
	for _, k := range specKeys(rec.Spec, dec.Spec) {
		if kindInSpec(rec, k) && kindInSpec(dec, k) {
			continue
		}
		change(k, rec.Spec[k], dec.Spec[k])
	}
	change("key codec", rec.KeyCodec, dec.KeyCodec)
	change("value codec", rec.ValueCodec, dec.ValueCodec)
	return d
}

// kindInSpec reports whether the spec key k of t only repeats its kind (a
// global table's spec names it), or is absent: shapes then show the kind
// once.
func kindInSpec(t jetstream.TableMeta, k string) bool {
	return k == "kind" && (t.Spec[k] == "" || t.Spec[k] == string(t.Kind))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// declaredTables returns the shape of every table of cfg.
func declaredTables(tables []manager.Collection) map[string]jetstream.TableMeta {
	out := make(map[string]jetstream.TableMeta, len(tables))
	for _, t := range tables {
		m := jetstream.NewTableMeta(t)
		m.KeyCodec, m.ValueCodec = recordedCodecName(m.KeyCodec), recordedCodecName(m.ValueCodec)
		out[t.Name()] = m
	}
	return out
}

// movedCodecNames maps the codec names of value types that moved to
// another package to the names apps recorded before the move (a codec is
// named by its Go type, package path included): the avg aggregation's
// Average left package edge for edge/builtin. Recording the earlier name
// keeps every app's metadata as it was, so that neither an app created
// before the move nor a node of an earlier release refuses the table. (The
// codecs of package manager/codec keep their earlier manager.XCodec names
// in manager.ShapeOf itself.)
var movedCodecNames = map[string]string{
	"manager.JSONCodec[github.com/edgetables/edgetables/edge/builtin.Average]": "manager.JSONCodec[github.com/edgetables/edgetables/edge.Average]",
}

// recordedCodecName returns the name an app records for the codec name.
func recordedCodecName(name string) string {
	if old, ok := movedCodecNames[name]; ok {
		return old
	}
	return name
}
