package jetstream

import "errors"

// Sentinel errors of this package. Test for them with errors.Is; the errors
// returned wrap them with the stream, partition or sequence concerned.
var (
	// ErrBadKeyToken is returned when a subject token is not a key token
	// written by EncodeKey: not canonical unpadded URL-safe base64 and not
	// the empty-key token "=".
	ErrBadKeyToken = errors.New("edgetables/jetstream: bad key token")
	// ErrBadSubject is returned by Replay for a message whose subject is
	// neither a record nor a commit marker subject of the partition: the
	// stream holds data this package did not write.
	ErrBadSubject = errors.New("edgetables/jetstream: unexpected subject in changelog")
	// ErrBadMarker is returned by Replay, Follow and LastCommit for a
	// message on a partition's commit subject that is not a commit marker
	// (not its JSON).
	ErrBadMarker = errors.New("edgetables/jetstream: bad commit marker")
	// ErrBadName is returned for an app, table or agent name that cannot be
	// used in stream names or subjects.
	ErrBadName = errors.New("edgetables/jetstream: invalid name")
	// ErrKeyTooLong is returned by Append for a key longer than MaxKeyLen
	// bytes: its subject would exceed the NATS protocol's control line
	// limit and the server would close the connection.
	ErrKeyTooLong = errors.New("edgetables/jetstream: key too long")
	// ErrBadPartition is returned for a partition number outside
	// [0, Partitions).
	ErrBadPartition = errors.New("edgetables/jetstream: partition out of range")
	// ErrSubjectOverlap is returned by NewSource when the source subjects
	// overlap each other in a way that cannot be merged, or overlap the
	// subjects of another stream or of the app's own streams.
	ErrSubjectOverlap = errors.New("edgetables/jetstream: subjects overlap")
	// ErrReaderClosed is returned by SourceReader.Next after Close, or after
	// the server ended the consumer (for example, it was deleted).
	ErrReaderClosed = errors.New("edgetables/jetstream: source reader closed")
	// ErrServerStart is returned (wrapped with the server's own message) by
	// StartServer when the server reports a fatal startup error.
	ErrServerStart = errors.New("edgetables/jetstream: nats-server failed to start")
	// ErrNoResponder is returned by Query when no node serves queries on
	// the target node's subject: the node is down, has not called
	// ServeQueries yet, or (in a cluster) its subscription has not reached
	// the server the caller is connected to yet.
	ErrNoResponder = errors.New("edgetables/jetstream: no node answers queries")

	// ErrLeaderless is returned when a replicated stream has no leader
	// (an election is under way): a replica's own state may lag the
	// stream's, so it is not used. Retry shortly.
	ErrLeaderless = errors.New("edgetables/jetstream: stream has no leader")

	// ErrNoMeta is returned by Meta.Load when the app has no metadata yet:
	// its bucket or its document does not exist (a new app, or one created
	// by an edgetables older than the metadata).
	ErrNoMeta = errors.New("edgetables/jetstream: the app has no metadata")
	// ErrMetaVersion is returned for an app metadata document of a later
	// version than MetaVersion: a newer edgetables wrote it.
	ErrMetaVersion = errors.New("edgetables/jetstream: app metadata of a later version")
	// ErrBadMeta is returned for an app metadata document that cannot be
	// read: not JSON, no version, no partition count.
	ErrBadMeta = errors.New("edgetables/jetstream: unreadable app metadata")
	// ErrMetaConflict is returned by Meta.Update when the document changed
	// since the revision given: another node wrote it.
	ErrMetaConflict = errors.New("edgetables/jetstream: app metadata changed meanwhile")
	// ErrWireVersion is returned for a document read from NATS (commit
	// marker, member state, assignment, record, dead letter) of a later
	// wire version than this edgetables reads: a newer one wrote it.
	ErrWireVersion = errors.New("edgetables/jetstream: document of a later wire version")
	// ErrClusterUnsupported is returned by StartServer and
	// CheckServerConfig for an embedded cluster (ServerConfig.ClusterListen)
	// in a 32-bit build (linux/arm/v7): nats-server v2.15.2's JetStream
	// cluster stores a 64-bit field atomically at an offset that is not
	// 64-bit aligned on 32-bit platforms, and the server panics within a
	// second of forming the cluster. A single node, a leaf node of a hub
	// and a client of an external cluster run there.
	ErrClusterUnsupported = errors.New("edgetables/jetstream: an embedded JetStream cluster does not run in a 32-bit build " +
		"(nats-server v2.15.2 panics on an unaligned 64-bit atomic in its cluster state); " +
		"on this device run a single node, a leaf node of a hub, or use an external NATS cluster")
)
