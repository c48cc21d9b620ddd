package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager"
)

// MetaVersion is the version of the AppMeta document this package writes.
// It reads every version up to it; a document of a later version (written
// by a newer edgetables) is refused with ErrMetaVersion rather than
// rewritten without the fields this version does not know.
//
// Version 1: app, partitions, created, created_by, and tables, each with
// kind, spec, key_codec, value_codec, added, added_by, undeclared,
// undeclared_by, resets and reset (at, by, done, purged).
const MetaVersion = 1

// metaKey is the key of the AppMeta document in the meta bucket.
const metaKey = "app"

// metaHistory is how many versions of the document the bucket keeps (the
// newest included), for an operator's `nats kv history`.
const metaHistory = 16

// AppMeta is an app's metadata: the shape it was created with, which every
// node of it must have. It is stored as JSON under the key "app" of the KV
// bucket <app>_meta (see Meta), written once when the app is first created
// and changed only by compare-and-set.
type AppMeta struct {
	// Version is the document's format version (MetaVersion when written
	// by this package).
	Version int `json:"version"`
	// App is the app's name.
	App string `json:"app"`
	// Partitions is the app's partition count: a key's partition is its
	// hash modulo this count, so it never changes for an app.
	Partitions int `json:"partitions"`
	// Created is when the document was first written, CreatedBy by which
	// node.
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// Tables holds every table the app ever had, by name, including those
	// no longer declared by its nodes.
	Tables map[string]TableMeta `json:"tables"`
}

// TableMeta is what an app records of one of its tables.
type TableMeta struct {
	// Kind is the table's kind (table, windowed, set, global).
	Kind manager.TableKind `json:"kind"`
	// Spec is the table's spec (manager.Collection.Spec), with a windowed
	// table's window, hop, expires and time filled in. For a built-in
	// (--table) table: source, key, agg, field, window, hop, expires,
	// time.
	Spec map[string]string `json:"spec,omitempty"`
	// KeyCodec and ValueCodec name the table's codecs (see
	// manager.TableShape).
	KeyCodec   string `json:"key_codec"`
	ValueCodec string `json:"value_codec"`
	// Added is when the table's data began: when a node first declared it,
	// or when it was last reset; AddedBy is that node.
	Added   time.Time `json:"added"`
	AddedBy string    `json:"added_by,omitempty"`
	// Undeclared, when set, is when a node of the app first started
	// without declaring the table (UndeclaredBy): from then on the table
	// misses events, so declaring it again needs a reset.
	Undeclared   time.Time `json:"undeclared,omitzero"`
	UndeclaredBy string    `json:"undeclared_by,omitempty"`
	// Resets counts the table's resets; a node whose stores have seen
	// fewer rebuilds them. Reset is the last one.
	Resets int         `json:"resets,omitempty"`
	Reset  *TableReset `json:"reset,omitempty"`
}

// TableReset is a table's last reset: its records dropped from the
// changelog, and its new shape recorded.
type TableReset struct {
	// At is when the reset was claimed, By by which node: only that node
	// drops the records, then sets Done. Nodes wait for Done.
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Done bool      `json:"done"`
	// Purged is how many changelog messages the reset dropped.
	Purged uint64 `json:"purged,omitempty"`
}

// NewTableMeta returns the shape of table c as an app records it: its
// kind, spec and codecs (Added and the rest are left zero).
func NewTableMeta(c manager.Collection) TableMeta {
	sh := manager.ShapeOf(c)
	spec := maps.Clone(c.Spec())
	if sh.Kind == manager.KindWindowed {
		if spec == nil {
			spec = map[string]string{}
		}
		ws := sh.Windows
		spec["window"], spec["expires"], spec["time"] = ws.Size.String(), ws.Expires.String(), sh.Time.String()
		delete(spec, "hop")
		if ws.Hopping() {
			spec["hop"] = ws.Step.String()
		}
	}
	return TableMeta{Kind: sh.Kind, Spec: spec, KeyCodec: sh.KeyCodec, ValueCodec: sh.ValueCodec}
}

// EncodeAppMeta returns the JSON of doc, indented for people reading the
// bucket.
func EncodeAppMeta(doc AppMeta) ([]byte, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: encode the metadata of app %s: %w", doc.App, err)
	}
	return b, nil
}

// DecodeAppMeta decodes a document written by EncodeAppMeta of this or an
// earlier version. A document of a later version gives an error wrapping
// ErrMetaVersion; one without a version or partition count, an error
// wrapping ErrBadMeta.
func DecodeAppMeta(b []byte) (AppMeta, error) {
	var doc AppMeta
	if err := json.Unmarshal(b, &doc); err != nil {
		return AppMeta{}, fmt.Errorf("%w: %w", ErrBadMeta, err)
	}
	switch {
	case doc.Version > MetaVersion:
		return AppMeta{}, fmt.Errorf("%w: app %s: version %d, this edgetables reads up to %d", ErrMetaVersion, doc.App, doc.Version, MetaVersion)
	case doc.Version < 1:
		return AppMeta{}, fmt.Errorf("%w: no version", ErrBadMeta)
	case doc.Partitions < 1:
		return AppMeta{}, fmt.Errorf("%w: app %s: partitions %d", ErrBadMeta, doc.App, doc.Partitions)
	}
	if doc.Tables == nil {
		doc.Tables = map[string]TableMeta{}
	}
	return doc, nil
}

// Meta reads and writes an app's AppMeta in the KV bucket <app>_meta
// (MetaBucket), under the key "app". The bucket keeps the last 16
// versions. Writes are create-only (Create) or compare-and-set on the
// revision read (Update), so nodes starting at once agree on one document.
// A Meta is safe for concurrent use.
type Meta struct {
	js     natsjs.JetStream
	app    string
	bucket string
}

// NewMeta returns the metadata store of app. It does no I/O.
func NewMeta(js natsjs.JetStream, app string) (*Meta, error) {
	if err := ValidateApp(app); err != nil {
		return nil, err
	}
	return &Meta{js: js, app: app, bucket: MetaBucket(app)}, nil
}

// Bucket returns the name of the KV bucket.
func (m *Meta) Bucket() string { return m.bucket }

// Load returns the document and its revision, or an error wrapping
// ErrNoMeta when the bucket or the document does not exist. It creates
// nothing. One request, answered by the bucket stream's leader, retried
// while the cluster or the stream has no leader.
func (m *Meta) Load(ctx context.Context) (AppMeta, uint64, error) {
	return m.load(ctx, false)
}

// load is Load; with exists set, the caller knows the document exists (its
// create was refused), and "not found" is retried: an answer from a server
// that has not caught up.
func (m *Meta) load(ctx context.Context, exists bool) (AppMeta, uint64, error) {
	var (
		doc AppMeta
		rev uint64
	)
	err := retry(ctx, "read "+m.bucket, func() error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		// The leader's copy: a KV get is a direct get, which any replica
		// may answer, one still catching up (this node's, just
		// restarted) included, and a node told "no metadata" would
		// create the app again or stop.
		msg, err := leaderLastMsg(actx, m.js, "KV_"+m.bucket, kvSubject(m.bucket, metaKey))
		switch {
		case exists && (errors.Is(err, natsjs.ErrStreamNotFound) || errors.Is(err, natsjs.ErrMsgNotFound)):
			return fmt.Errorf("%w: %w", errStaleAnswer, err)
		case errors.Is(err, natsjs.ErrStreamNotFound):
			return natsjs.ErrBucketNotFound
		case errors.Is(err, natsjs.ErrMsgNotFound):
			return natsjs.ErrKeyNotFound
		case err != nil:
			return apiAbsent(err)
		case kvRemoved(msg.Header):
			return natsjs.ErrKeyNotFound
		}
		if doc, err = DecodeAppMeta(msg.Data); err != nil {
			return err
		}
		rev = msg.Sequence
		return nil
	})
	switch {
	case errors.Is(err, natsjs.ErrBucketNotFound), errors.Is(err, natsjs.ErrKeyNotFound):
		return AppMeta{}, 0, fmt.Errorf("%w: app %s (bucket %s)", ErrNoMeta, m.app, m.bucket)
	case err != nil:
		return AppMeta{}, 0, fmt.Errorf("edgetables/jetstream: metadata of app %s: %w", m.app, err)
	}
	return doc, rev, nil
}

// Create creates the bucket (with replicas copies, file storage) if needed
// and stores doc unless a document exists. It returns the stored document
// and its revision, and whether it was doc: when another node created the
// app first, its document. Its Version is set to MetaVersion.
func (m *Meta) Create(ctx context.Context, doc AppMeta, replicas int) (AppMeta, uint64, bool, error) {
	doc.Version = MetaVersion
	data, err := EncodeAppMeta(doc)
	if err != nil {
		return AppMeta{}, 0, false, err
	}
	kv, err := ensureKeyValue(ctx, m.js, natsjs.KeyValueConfig{
		Bucket:      m.bucket,
		Description: "edgetables metadata of app " + m.app,
		History:     metaHistory,
		Storage:     natsjs.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return AppMeta{}, 0, false, fmt.Errorf("edgetables/jetstream: metadata of app %s: %w", m.app, err)
	}
	var rev uint64
	err = retry(ctx, "create the metadata in "+m.bucket, func() (err error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		rev, err = kv.Create(actx, metaKey, data)
		return apiAbsent(err)
	})
	switch {
	case err == nil:
		return doc, rev, true, nil
	case errors.Is(err, natsjs.ErrKeyExists):
		// Another node was first (or our first attempt's answer was
		// lost): read what is stored.
		got, rev, err := m.load(ctx, true)
		return got, rev, false, err
	}
	return AppMeta{}, 0, false, fmt.Errorf("edgetables/jetstream: create the metadata of app %s: %w", m.app, err)
}

// Update stores doc if the stored document is still at revision rev, and
// returns the new revision. If it changed meanwhile, the error wraps
// ErrMetaConflict: read it again and decide again. Its Version is set to
// MetaVersion. One request.
func (m *Meta) Update(ctx context.Context, doc AppMeta, rev uint64) (uint64, error) {
	doc.Version = MetaVersion
	data, err := EncodeAppMeta(doc)
	if err != nil {
		return 0, err
	}
	var newRev uint64
	err = retry(ctx, "update the metadata in "+m.bucket, func() error {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		kv, err := m.js.KeyValue(actx, m.bucket)
		if err != nil {
			return apiAbsent(err)
		}
		newRev, err = kv.Update(actx, metaKey, data, rev)
		return apiAbsent(err)
	})
	switch {
	case err == nil:
		return newRev, nil
	case errors.Is(err, natsjs.ErrKeyRevisionMismatch), errors.Is(err, natsjs.ErrKeyExists):
		return 0, fmt.Errorf("%w: app %s, revision %d: %w", ErrMetaConflict, m.app, rev, err)
	}
	return 0, fmt.Errorf("edgetables/jetstream: update the metadata of app %s: %w", m.app, err)
}

// WaitChange waits until the stored document's revision is past rev and
// returns it, or until ctx ends. It watches the key: no polling.
func (m *Meta) WaitChange(ctx context.Context, rev uint64) (AppMeta, uint64, error) {
	kv, err := m.js.KeyValue(ctx, m.bucket)
	if err != nil {
		return AppMeta{}, 0, fmt.Errorf("edgetables/jetstream: watch the metadata of app %s: %w", m.app, apiAbsent(err))
	}
	w, err := kv.Watch(ctx, metaKey)
	if err != nil {
		return AppMeta{}, 0, fmt.Errorf("edgetables/jetstream: watch the metadata of app %s: %w", m.app, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return AppMeta{}, 0, fmt.Errorf("edgetables/jetstream: watch the metadata of app %s: %w", m.app, ctx.Err())
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return AppMeta{}, 0, fmt.Errorf("edgetables/jetstream: watch the metadata of app %s: watch ended", m.app)
			case e == nil || e.Revision() <= rev:
				continue
			case e.Operation() != natsjs.KeyValuePut:
				return AppMeta{}, 0, fmt.Errorf("%w: app %s: the document was removed", ErrNoMeta, m.app)
			}
			doc, err := DecodeAppMeta(e.Value())
			if err != nil {
				return AppMeta{}, 0, err
			}
			return doc, e.Revision(), nil
		}
	}
}

// apiAbsent marks an error of a request nobody answered (no responders:
// the JetStream API of a cluster between meta leaders, or of a server still
// starting) as retryable, as JetStream not being enabled yet is.
func apiAbsent(err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: %w", natsjs.ErrJetStreamNotEnabled, err)
	}
	return err
}
