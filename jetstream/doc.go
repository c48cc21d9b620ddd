// Package jetstream implements the table manager's ports (port.Changelog,
// port.Source, port.SourceReader, port.DeadLetters and
// port.Coordinator) on NATS JetStream, carries routed reads between
// nodes (ServeQueries, Query), and runs the embedded nats-server, alone or
// as a node of a cluster. Everything specific to JetStream lives here;
// package manager never imports it.
//
// # Layout
//
// Every name derives from the app name (letters, digits, '_' and '-'):
//
//	stream                     subjects
//	<app>_source               the input subjects the app consumes
//	<app>_changelog_<p>        <app>.changelog.<p>.>   records
//	                           <app>.commit.<p>        commit markers
//	<app>_dlq                  <app>.dlq.>             dead letters
//	KV_<app>_group (KV bucket) $KV.<app>_group.>       members, leader, assignment (see Group)
//	KV_<app>_meta (KV bucket)  $KV.<app>_meta.app      the app's metadata (see AppMeta, Meta)
//	(core NATS, not stored)    <app>.query.<node>      routed reads to node
//
// A record of key k in table t of partition p has the subject
// <app>.changelog.<p>.<t>.<token>, where token is k in unpadded URL-safe
// base64 ("=" for the empty key; see EncodeKey). A tombstone is an empty
// message with the header Edgetables-Op: del. A commit marker is the JSON of
// a port.CommitMarker. The dead letters of agent a go to <app>.dlq.<a>.
//
// # Why one changelog stream per partition
//
//   - Recovery replays one partition. A consumer filtered to one partition of
//     a shared stream still walks the whole stream on the server (measured:
//     replaying 1/8 of a stream took as long as replaying all of it).
//   - Atomic batch publish, with which the exactly-once mode writes a
//     commit's records and marker all-or-nothing, works within one stream
//     only; so do the fast batches of at-least-once Appends.
//   - Fencing: each Append chains Nats-Expected-Last-Sequence from the
//     sequence the writer knows the log to end at. That is a stream-level
//     check, so it fences a zombie writer only if the stream has exactly one
//     legitimate writer: the partition's owner. Stream-level expectations can
//     be pipelined by that one writer (unlike per-subject ones, which the
//     server refuses while an earlier write is in flight at R3).
//
// # Why one subject per key with MaxMsgsPerSubject = 1
//
// The changelog streams keep only the last message of each subject, so the
// server compacts each partition's log to its live keys (plus their
// tombstones and the last commit marker): its size and its replay time follow
// the number of keys, not the number of writes. Replay therefore sees gaps
// in the sequence numbers, which it handles.
//
// # Costs and guarantees
//
// The changelog, source and dead-letter streams use file storage. Whether a
// stored message survives a power loss depends on the server's sync setting
// (ServerConfig.SyncAlways). Each record carries its Nats-Expected-Last-Sequence
// header (about 45 bytes), which the server stores with the message.
package jetstream
