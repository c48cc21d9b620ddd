package jetstream

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Name limits. They keep every subject this package writes well below the
// NATS protocol's 4 KiB control line (subject, reply subject and sizes),
// which the server enforces by closing the connection.
const (
	// MaxAppLen is the longest app name accepted.
	MaxAppLen = 64
	// MaxTableLen is the longest table (or agent) name accepted, in bytes.
	MaxTableLen = 255
	// MaxKeyLen is the longest key accepted by Append, in bytes; its token
	// is at most 2732 characters.
	MaxKeyLen = 2048
	// MaxNodeLen is the longest node (group member) name accepted.
	MaxNodeLen = 128
)

// Message headers written by this package.
const (
	// HeaderOp marks a changelog tombstone with the value OpDelete.
	HeaderOp = "Edgetables-Op"
	// OpDelete is the value of HeaderOp on a tombstone.
	OpDelete = "del"
	// HeaderAgent names the agent that refused a dead letter.
	HeaderAgent = "Edgetables-Agent"
	// HeaderReason holds why the agent refused a dead letter.
	HeaderReason = "Edgetables-Reason"
	// HeaderSourceSubject is the subject the dead letter had in the source.
	HeaderSourceSubject = "Edgetables-Source-Subject"
	// HeaderSourceSeq is the dead letter's sequence in the source stream.
	HeaderSourceSeq = "Edgetables-Source-Seq"
	// HeaderDataOmitted, on a dead letter without data, gives the size in
	// bytes of the event's data, left out because it did not fit the
	// server's max_payload with the dead letter's headers.
	HeaderDataOmitted = "Edgetables-Data-Omitted"
	// HeaderHeadersOmitted, on a dead letter without the event's headers,
	// gives their size in bytes: they were left out because with the dead
	// letter's own they would pass JetStream's 64 KiB limit on headers.
	HeaderHeadersOmitted = "Edgetables-Headers-Omitted"
	// HeaderOrigPrefix prefixes the original message's own Nats-* and
	// Edgetables-* headers in a dead letter (they would otherwise steer the
	// dead-letter publish, or pass for the dead letter's own).
	HeaderOrigPrefix = "Edgetables-Orig-"
)

// emptyKeyToken is the token of the empty key: base64 never produces "=" in
// unpadded form, and a subject token cannot be empty.
const emptyKeyToken = "="

var keyEncoding = base64.RawURLEncoding.Strict()

// ValidateApp reports whether app can name an app's streams and subjects:
// 1 to MaxAppLen characters from [A-Za-z0-9_-].
func ValidateApp(app string) error {
	if app == "" || len(app) > MaxAppLen {
		return fmt.Errorf("%w: app %q: need 1 to %d characters", ErrBadName, app, MaxAppLen)
	}
	for i := 0; i < len(app); i++ {
		c := app[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: app %q: only A-Z, a-z, 0-9, _ and - are allowed", ErrBadName, app)
		}
	}
	return nil
}

// ValidateToken reports whether name (a table or agent name) can be one
// subject token: 1 to MaxTableLen bytes of valid UTF-8 without '.', '*',
// '>', white space or control characters. Dots are refused because the
// record subject pattern of one table ("<table>.>") would then also match
// the records of another ("<table>.x").
func ValidateToken(kind, name string) error {
	if name == "" || len(name) > MaxTableLen {
		return fmt.Errorf("%w: %s %q: need 1 to %d bytes", ErrBadName, kind, name, MaxTableLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s %q: not valid UTF-8", ErrBadName, kind, name)
	}
	for _, r := range name {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q: '.', '*', '>', spaces and control characters are not allowed", ErrBadName, kind, name)
		}
	}
	return nil
}

// ValidateNode reports whether node can name a member of a group (a KV key
// and a query subject): 1 to MaxNodeLen characters from [A-Za-z0-9_-.],
// with no empty dot-separated part (so host names qualify).
func ValidateNode(node string) error {
	if node == "" || len(node) > MaxNodeLen {
		return fmt.Errorf("%w: node %q: need 1 to %d characters", ErrBadName, node, MaxNodeLen)
	}
	if node[0] == '.' || node[len(node)-1] == '.' || strings.Contains(node, "..") {
		return fmt.Errorf("%w: node %q: empty part between dots", ErrBadName, node)
	}
	for i := 0; i < len(node); i++ {
		c := node[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: node %q: only A-Z, a-z, 0-9, _, - and . are allowed", ErrBadName, node)
		}
	}
	return nil
}

// EncodeKey returns the subject token of key: unpadded URL-safe base64
// (RFC 4648 §5), or "=" for the empty key. The token never contains '.',
// '*', '>' or white space, and DecodeKey inverts it.
func EncodeKey(key []byte) string {
	if len(key) == 0 {
		return emptyKeyToken
	}
	return keyEncoding.EncodeToString(key)
}

// DecodeKey returns the key of a token written by EncodeKey. It accepts only
// canonical tokens, so EncodeKey(DecodeKey(t)) == t; anything else gives an
// error wrapping ErrBadKeyToken. The empty key decodes to a non-nil empty
// slice.
func DecodeKey(token string) ([]byte, error) {
	if token == emptyKeyToken {
		return []byte{}, nil
	}
	// The decoder skips CR and LF even in strict mode; refuse them so a
	// token has exactly one spelling.
	// (Two IndexByte scans: a quarter of ContainsAny's time on a key
	// token, 8 ns against 39; this runs for every record replayed.)
	if token == "" || strings.IndexByte(token, '\r') >= 0 || strings.IndexByte(token, '\n') >= 0 {
		return nil, fmt.Errorf("%w: %q", ErrBadKeyToken, token)
	}
	key, err := keyEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadKeyToken, token, err)
	}
	return key, nil
}

// SourceStream is the name of the app's source stream.
func SourceStream(app string) string { return app + "_source" }

// ChangelogStream is the name of the changelog stream of partition p.
func ChangelogStream(app string, p int) string { return app + "_changelog_" + strconv.Itoa(p) }

// ChangelogSubjects are the subjects of partition p's changelog stream:
// its records and its commit markers.
func ChangelogSubjects(app string, p int) []string {
	return []string{recordPrefix(app, p) + ">", CommitSubject(app, p)}
}

// RecordSubject is the subject of the record of key in table, partition p:
// "<app>.changelog.<p>.<table>.<keytoken>".
func RecordSubject(app string, p int, table string, key []byte) string {
	return recordPrefix(app, p) + table + "." + EncodeKey(key)
}

// TableSubjects are the subjects holding table's records in every partition.
func TableSubjects(app, table string) []string {
	return []string{app + ".changelog.*." + table + ".>"}
}

// CommitSubject is the subject of partition p's commit markers.
func CommitSubject(app string, p int) string { return app + ".commit." + strconv.Itoa(p) }

// DeadLetterStream is the name of the app's dead-letter stream.
func DeadLetterStream(app string) string { return app + "_dlq" }

// DeadLetterSubject is the subject of the dead letters of agent:
// "<app>.dlq.<agent>".
func DeadLetterSubject(app, agent string) string { return app + ".dlq." + agent }

// DeadLetterSubjects are the subjects of the app's dead-letter stream.
func DeadLetterSubjects(app string) []string { return []string{app + ".dlq.>"} }

// GroupBucket is the name of the app's consumer-group KV bucket.
func GroupBucket(app string) string { return app + "_group" }

// MetaBucket is the name of the KV bucket of the app's metadata
// (AppMeta).
func MetaBucket(app string) string { return app + "_meta" }

// QuerySubject is the subject on which node answers the app's routed
// reads: "<app>.query.<node>".
func QuerySubject(app, node string) string { return app + ".query." + node }

// GlobalStream is the name of the stream of the app's global tables.
func GlobalStream(app string) string { return app + "_global" }

// GlobalSubject is the subject of the record of key in global table:
// "<app>.global.<table>.<keytoken>".
func GlobalSubject(app, table string, key []byte) string {
	return globalPrefix(app) + table + "." + EncodeKey(key)
}

// GlobalTableSubjects are the subjects holding global table's records.
func GlobalTableSubjects(app, table string) []string {
	return []string{globalPrefix(app) + table + ".>"}
}

func globalPrefix(app string) string { return app + ".global." }

// reservedSubjects are the app's own subject spaces, which a source must
// not capture.
func reservedSubjects(app string) []string {
	return []string{app + ".changelog.>", app + ".commit.>", app + ".dlq.>", app + ".query.>", app + ".global.>"}
}

func recordPrefix(app string, p int) string { return app + ".changelog." + strconv.Itoa(p) + "." }

// ConsumerName turns name into a valid durable consumer name: characters
// outside [A-Za-z0-9_-] become '_', the result is cut to 64 bytes, and an
// empty name becomes "edgetables".
func ConsumerName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 {
		return "edgetables"
	}
	return string(b)
}
