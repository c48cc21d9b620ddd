package edge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/manager"
)

// resetWaitLog is how often a node waiting for another node's reset says
// so.
const resetWaitLog = 15 * time.Second

// checkApp reads the app's metadata, or records it if the app is new, and
// settles it with the node's configuration before anything else of the app
// is touched: it refuses (ErrAppShape) another partition count or a changed
// table, records new tables and tables no longer declared, carries out the
// resets of cfg.ResetTables, waits for resets claimed by other nodes, and
// rebuilds the local stores that predate a reset. Every write to the
// document is a create-only or compare-and-set, and a conflict starts the
// round again from what is stored.
func (n *Node) checkApp(ctx context.Context, js natsjs.JetStream) error {
	cfg := n.cfg
	meta, err := jetstream.NewMeta(js, cfg.App)
	if err != nil {
		return err
	}
	declared := declaredTables(cfg.Tables)
	// A reset this node carries out leaves the list: its flag is then
	// done, not a leftover.
	cfg.ResetTables = slices.Clone(cfg.ResetTables)
	for {
		doc, rev, err := meta.Load(ctx)
		if errors.Is(err, jetstream.ErrNoMeta) {
			doc, rev, err = n.createApp(ctx, js, meta, declared)
		}
		switch {
		case errors.Is(err, jetstream.ErrMetaVersion), errors.Is(err, jetstream.ErrBadMeta):
			return &shapeError{msg: fmt.Sprintf("app %s: its metadata (KV bucket %s) cannot be read by this edgetables: %v; run the edgetables that wrote it, or a newer one",
				cfg.App, meta.Bucket(), err), cause: err}
		case err != nil:
			return err
		}
		if doc.Partitions != cfg.Partitions {
			return partitionsError(cfg.App, cfg.Partitions, doc.Partitions,
				fmt.Sprintf("recorded in the KV bucket %s at %s by node %s", meta.Bucket(), doc.Created.Format(time.RFC3339), doc.CreatedBy))
		}
		if table, by := pendingReset(doc); table != "" {
			if by == cfg.Name {
				err := n.finishReset(ctx, js, meta, doc, rev, table)
				switch {
				case err == nil:
					cfg.ResetTables = slices.DeleteFunc(cfg.ResetTables, func(t string) bool { return t == table })
				case !errors.Is(err, jetstream.ErrMetaConflict):
					return err
				}
				continue
			}
			if err := n.waitReset(ctx, meta, rev, table, by); err != nil {
				return err
			}
			continue
		}
		plan, err := planApp(doc, &cfg, declared, time.Now().UTC())
		if err != nil {
			return err
		}
		if !plan.changed {
			for _, note := range plan.notes {
				n.log.Warn(note)
			}
			return n.syncLocalStores(doc)
		}
		if len(plan.claimed) > 0 {
			replan, err := n.checkStopped(ctx, js, meta, rev, plan.claimed)
			if err != nil {
				return err
			}
			if replan {
				n.log.Info("the app's metadata changed meanwhile; reading it again", "bucket", meta.Bucket())
				continue
			}
		}
		if _, err := meta.Update(ctx, plan.doc, rev); errors.Is(err, jetstream.ErrMetaConflict) {
			n.log.Info("the app's metadata changed meanwhile; reading it again", "bucket", meta.Bucket())
			continue
		} else if err != nil {
			return err
		}
		for _, t := range plan.added {
			n.log.Info("recorded a new table in the app's metadata", "table", t, "spec", formatShape(plan.doc.Tables[t]), "bucket", meta.Bucket())
		}
		for _, t := range plan.undeclared {
			n.log.Warn("a table of the app is not declared by this node: recorded as undeclared; it misses events from now on, "+
				"and declaring it again needs --reset-table", "table", t, "bucket", meta.Bucket())
		}
		for _, t := range plan.claimed {
			n.log.Warn("resetting table: its new spec is recorded; dropping its records from the changelog of every partition",
				"table", t, "spec", formatShape(plan.doc.Tables[t]), "resets", plan.doc.Tables[t].Resets)
		}
	}
}

// createApp records the app's metadata for the first time, from the
// node's configuration, unless another node does it first: then it returns
// that node's document. An app that has changelog streams but no metadata
// was created by an earlier edgetables: its partition count is read from
// its streams, and another count is refused before anything is written
// (unless the metadata appeared meanwhile: then that is returned).
func (n *Node) createApp(ctx context.Context, js natsjs.JetStream, meta *jetstream.Meta,
	declared map[string]jetstream.TableMeta) (jetstream.AppMeta, uint64, error) {
	cfg := n.cfg
	existing, err := jetstream.ChangelogPartitions(ctx, js, cfg.App)
	if err != nil {
		return jetstream.AppMeta{}, 0, err
	}
	if existing != 0 {
		// Another node may have recorded the app, then created its first
		// streams, since this one found no metadata: a node records the
		// metadata before it creates a stream, so it is there to read now.
		doc, rev, err := meta.Load(ctx)
		if !errors.Is(err, jetstream.ErrNoMeta) {
			return doc, rev, err
		}
	}
	if existing != 0 && existing != cfg.Partitions {
		return jetstream.AppMeta{}, 0, partitionsError(cfg.App, cfg.Partitions, existing,
			fmt.Sprintf("it has changelog streams %s to %s", jetstream.ChangelogStream(cfg.App, 0), jetstream.ChangelogStream(cfg.App, existing-1)))
	}
	now := time.Now().UTC()
	doc := jetstream.AppMeta{App: cfg.App, Partitions: cfg.Partitions, Created: now, CreatedBy: cfg.Name,
		Tables: map[string]jetstream.TableMeta{}}
	for name, t := range declared {
		t.Added, t.AddedBy = now, cfg.Name
		doc.Tables[name] = t
	}
	got, rev, created, err := meta.Create(ctx, doc, cfg.Replicas)
	if err != nil {
		return jetstream.AppMeta{}, 0, err
	}
	switch {
	case !created:
		n.log.Info("another node recorded the app's metadata first", "bucket", meta.Bucket(), "by", got.CreatedBy)
	case existing != 0:
		n.log.Warn("recorded the metadata of an app created before edgetables kept it, from this node's flags: "+
			"check that its tables are declared as they were", "bucket", meta.Bucket(), "partitions", doc.Partitions,
			"tables", slices.Sorted(maps.Keys(doc.Tables)))
	default:
		n.log.Info("created the app: recorded its metadata", "bucket", meta.Bucket(), "partitions", doc.Partitions,
			"tables", slices.Sorted(maps.Keys(doc.Tables)))
	}
	return got, rev, nil
}

// checkStopped refuses a reset while other nodes of the app run: they
// would go on writing the table's records while it is purged. A lease in
// the group does not prove that its node runs: a node that stopped after
// the cluster lost its quorum (the last ones of a cluster stopped together)
// could not remove it, and it stays until the server expires it, some time
// after the cluster is back. So the leases found are watched for one TTL,
// and only the nodes that renew theirs are running. Meanwhile another node
// may have carried out the reset and started; when the metadata moved from
// rev, checkStopped returns replan and the caller plans again from what is
// stored.
func (n *Node) checkStopped(ctx context.Context, js natsjs.JetStream, meta *jetstream.Meta, rev uint64, tables []string) (replan bool, err error) {
	others := func() ([]jetstream.Lease, error) {
		live, err := jetstream.LiveMembers(ctx, js, n.cfg.App)
		return slices.DeleteFunc(live, func(l jetstream.Lease) bool { return l.Node == n.cfg.Name }), err
	}
	first, err := others()
	if err != nil || len(first) == 0 {
		return false, err
	}
	wait := cmp.Or(n.cfg.SessionTimeout, jetstream.DefaultSessionTimeout)
	for _, l := range first {
		wait = max(wait, l.TTL)
	}
	wait = min(wait, maxLeaseWatch) + time.Second
	n.log.Info("--reset-table: other nodes of the app hold leases in its group; watching whether they renew them",
		"tables", tables, "nodes", leaseNodes(first), "for", wait)
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		return false, ctx.Err()
	case <-t.C:
	}
	if _, now, err := meta.Load(ctx); err != nil || now != rev {
		return err == nil, err
	}
	second, err := others()
	if err != nil {
		return false, err
	}
	var running []string
	for _, l := range second {
		i := slices.IndexFunc(first, func(f jetstream.Lease) bool { return f.Node == l.Node })
		if i < 0 || first[i].Revision != l.Revision {
			running = append(running, l.Node)
		}
	}
	if len(running) > 0 {
		return false, shapeErrorf("--reset-table %s: nodes %v of app %s are running; stop every node of the app first "+
			"(they write the table's records, which the reset drops), then start them with the new spec", tables[0], running, n.cfg.App)
	}
	n.log.Info("--reset-table: no other node renewed its lease; they are stopped", "nodes", leaseNodes(first))
	return false, nil
}

// maxLeaseWatch bounds how long checkStopped watches leases: a node's
// session timeout is seconds.
const maxLeaseWatch = time.Minute

// leaseNodes returns the node of each lease.
func leaseNodes(ls []jetstream.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Node
	}
	return out
}

// finishReset drops the records of table, whose reset this node claimed,
// and records the reset as done. Only the claiming node does this, and
// every node waits for it, so no node writes the table meanwhile: the
// purge can be repeated after a crash.
func (n *Node) finishReset(ctx context.Context, js natsjs.JetStream, meta *jetstream.Meta, doc jetstream.AppMeta, rev uint64, table string) error {
	t := doc.Tables[table]
	var purged uint64
	var err error
	if t.Kind == manager.KindGlobal {
		purged, err = jetstream.PurgeGlobalTable(ctx, js, doc.App, table)
	} else {
		purged, err = jetstream.PurgeTable(ctx, js, doc.App, doc.Partitions, table)
	}
	if err != nil {
		return fmt.Errorf("reset table %s: %w", table, err)
	}
	r := *t.Reset
	r.Done, r.Purged = true, purged
	t.Reset = &r
	doc.Tables = maps.Clone(doc.Tables)
	doc.Tables[table] = t
	if _, err := meta.Update(ctx, doc, rev); err != nil {
		return fmt.Errorf("reset table %s: %w", table, err)
	}
	n.log.Warn("table reset: its records are dropped from the changelog and its new spec is recorded; it starts empty "+
		"from the current source position (events already committed are not replayed, even with --keep-source); "+
		"every node rebuilds its stores from the changelog at its next start",
		"table", table, "records_dropped", purged, "spec", formatShape(t))
	return nil
}

// waitReset waits until the metadata changes from revision rev (the reset
// of table by node by is pending), saying so every resetWaitLog; after an
// error of the watch it returns, so that the caller reads the document
// again.
func (n *Node) waitReset(ctx context.Context, meta *jetstream.Meta, rev uint64, table, by string) error {
	for {
		n.log.Warn("waiting for another node to finish the reset of a table (if it died, start it again)", "table", table, "node", by)
		wctx, cancel := context.WithTimeout(ctx, resetWaitLog)
		_, _, err := meta.WaitChange(wctx, rev)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("wait for the reset of table %s by node %s: %w", table, by, ctx.Err())
		case wctx.Err() == nil:
			// The watch failed (the cluster between leaders): read the
			// document again after a pause.
			n.log.Warn("watching the app's metadata failed; reading it again", "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			return nil
		}
	}
}

// resetsFile is the file in the data directory recording how many resets
// of each table its stores have seen.
const resetsFile = "resets.json"

// localResets is the content of resetsFile.
type localResets struct {
	App    string         `json:"app"`
	Resets map[string]int `json:"resets"`
}

// syncLocalStores rebuilds the local stores that hold records of a table
// from before its last reset: a store file cannot drop one table, so every
// partition store (or, for a global table, the global store) is removed
// and the manager replays it from the changelog, which no longer holds the
// dropped records. It costs one full replay, once per reset. Stores
// written by another app (a new --app in this data directory) are removed
// the same way, all of them.
func (n *Node) syncLocalStores(doc jetstream.AppMeta) error {
	path := filepath.Join(n.cfg.DataDir, resetsFile)
	var seen localResets
	all := false // rebuild every store
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	default:
		if err := json.Unmarshal(b, &seen); err != nil {
			n.log.Warn("data directory: unreadable record of table resets; rebuilding the stores", "file", path, "err", err)
			all = true
		}
	}
	if !all && seen.App != "" && seen.App != doc.App {
		// The stores hold another app's tables (a new --app in this data
		// directory): taken for this app's, they would be behind its
		// changelogs, or with --changelog-behind reseed mix the other
		// app's values into its tables.
		n.log.Warn("data directory: the table stores were written by app "+seen.App+"; removing them: they are rebuilt from this app's changelog (and the other app's from its own when it runs here again)",
			"app", doc.App, "dir", n.cfg.DataDir)
		all = true
	}
	want := localResets{App: doc.App, Resets: map[string]int{}}
	var partitions, global []string
	for name, t := range doc.Tables {
		if t.Resets == 0 {
			continue
		}
		want.Resets[name] = t.Resets
		if seen.Resets[name] >= t.Resets {
			continue
		}
		if t.Kind == manager.KindGlobal {
			global = append(global, name)
		} else {
			partitions = append(partitions, name)
		}
	}
	if all {
		partitions, global = []string{"(all)"}, []string{"(all)"}
	}
	for _, c := range []struct {
		dir    string
		tables []string
	}{{"tables", partitions}, {"global", global}} {
		if len(c.tables) == 0 {
			continue
		}
		removed, err := removeStores(filepath.Join(n.cfg.DataDir, c.dir))
		if err != nil {
			return err
		}
		if removed > 0 && !all {
			slices.Sort(c.tables)
			n.log.Warn("tables were reset since this node's stores were written: removed them; they are rebuilt from the changelog",
				"tables", c.tables, "stores", removed, "dir", filepath.Join(n.cfg.DataDir, c.dir))
		}
	}
	if b != nil && !all && maps.Equal(seen.Resets, want.Resets) {
		return nil
	}
	return writeFileSync(path, want)
}

// removeStores removes the store files (partition-*.db) of dir and returns
// how many there were.
func removeStores(dir string) (int, error) {
	files, err := filepath.Glob(filepath.Join(dir, "partition-*.db"))
	if err != nil {
		return 0, fmt.Errorf("data directory: %w", err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("data directory: remove a store that predates a table reset: %w", err)
		}
	}
	return len(files), nil
}

// writeFileSync writes v as JSON to path through a synced temporary file
// renamed over it, so that the file is whole or absent after a crash.
func writeFileSync(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if _, err = f.Write(append(b, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		if d, derr := os.Open(filepath.Dir(path)); derr == nil {
			err = d.Sync()
			_ = d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("data directory: write %s: %w", path, err)
	}
	return nil
}
