package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/subject"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Defaults and settings of the source.
const (
	// DefaultSourceMaxBytes is the default size limit of the source stream.
	DefaultSourceMaxBytes = 1 << 30 // 1 GiB
	// SourceMaxAckPending is the consumer's MaxAckPending: enough messages
	// for a commit interval at full speed.
	SourceMaxAckPending = 1 << 20
	// SourceAckWait is the consumer's AckWait. The reader skips the
	// redeliveries it causes (it delivers in sequence order only).
	SourceAckWait = 5 * time.Minute
)

// errCodeSubjectOverlap is the server's JSStreamSubjectOverlapErr.
const errCodeSubjectOverlap natsjs.ErrorCode = 10065

// SourceConfig configures an app's source stream.
type SourceConfig struct {
	// App is the app name (see ValidateApp). Required.
	App string
	// Subjects are the input subjects to capture (wildcards allowed).
	// Duplicates and subjects covered by another one (a.*.b under a.>) are
	// dropped; subjects that overlap only partly (a.*.c and a.b.*) are an
	// error, as the server refuses them. Required.
	Subjects []string
	// Consumer is the durable consumer's name, e.g. the node name; it is
	// sanitized with ConsumerName. Default "edgetables".
	Consumer string
	// Replicas is the stream's replication factor. Default 1.
	Replicas int
	// MaxBytes caps the stream in bytes; -1 is unlimited. Default 1 GiB.
	MaxBytes int64
	// MaxAge removes messages older than this. Default 0: never.
	MaxAge time.Duration
	// Logger receives the reader's warnings. Default slog.Default().
	Logger *slog.Logger
	// Sites make the stream a hub's: it captures no subjects and sources
	// the source stream of each site instead (see SiteSource); Subjects are
	// then ignored.
	Sites []SiteSource
}

// Source implements port.Source on the stream <app>_source with one
// durable pull consumer. It is safe for concurrent use.
type Source struct {
	js       natsjs.JetStream
	cfg      SourceConfig
	stream   string
	consumer string
	subjects []string

	mu   sync.Mutex
	last string // the consumer of the last reader opened
}

var _ port.Source = (*Source)(nil)

// readerIdle is how long a reader's consumer lives on the server once
// nobody pulls from it (a node that died or moved on).
const readerIdle = time.Minute

// dropTimeout bounds deleting a reader's consumer: a consumer whose leader
// is on a paused node may not answer, and it is removed when idle anyway.
const dropTimeout = time.Second

// NewSource creates the stream <app>_source capturing cfg.Subjects, or
// updates it. The stream keeps messages by limits (not by acks: trimming is
// explicit, see Trim), in file storage, and discards new messages once
// MaxBytes is reached, so unconsumed events are never silently dropped from
// the stream: JetStream publishers then get an error (they can retry), but
// core NATS publishers lose their messages without notice. Subjects that
// overlap another stream's subjects, or the app's own changelog, commit and
// dead-letter subjects, give an error wrapping ErrSubjectOverlap that names
// the stream.
func NewSource(ctx context.Context, js natsjs.JetStream, cfg SourceConfig) (*Source, error) {
	subjects, sources, err := sourceSubjects(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultSourceMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Source{js: js, cfg: cfg, stream: SourceStream(cfg.App), consumer: ConsumerName(cfg.Consumer), subjects: subjects}
	_, err = ensureStream(ctx, js, natsjs.StreamConfig{
		Name:        s.stream,
		Description: "edgetables source of app " + cfg.App,
		Subjects:    subjects,
		Retention:   natsjs.LimitsPolicy,
		Storage:     natsjs.FileStorage,
		Replicas:    cfg.Replicas,
		MaxMsgs:     -1,
		MaxBytes:    cfg.MaxBytes,
		MaxAge:      cfg.MaxAge,
		Discard:     natsjs.DiscardNew,
		Sources:     sources, // with sources, no duplicate window: sites' message ids may repeat
	})
	if err != nil {
		var apiErr *natsjs.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeSubjectOverlap {
			found, _ := overlapping(ctx, js, s.stream, subjects)
			if len(found) == 0 {
				found = []string{"subjects overlap another stream's"}
			}
			return nil, fmt.Errorf("%w: stream %s: %s: %w", ErrSubjectOverlap, s.stream, strings.Join(found, "; "), err)
		}
		return nil, fmt.Errorf("edgetables/jetstream: create or update stream %s: %w", s.stream, err)
	}
	return s, nil
}

// CheckSource checks, creating and changing nothing, that NewSource can
// capture cfg's subjects: they are valid, they do not overlap the app's
// own subjects, and no other stream captures any of them. A node runs it
// before it records a new app's shape, so that a first start refused for
// its subjects records nothing. Where the connection may not list the
// server's streams, only the subjects themselves are checked: NewSource
// then reports an overlap when it creates the stream.
func CheckSource(ctx context.Context, js natsjs.JetStream, cfg SourceConfig) error {
	subjects, _, err := sourceSubjects(cfg)
	if err != nil || len(subjects) == 0 {
		return err
	}
	stream := SourceStream(cfg.App)
	found, err := overlapping(ctx, js, stream, subjects)
	if err != nil {
		return nil // not permitted, or the server is busy: NewSource will tell
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: stream %s: %s", ErrSubjectOverlap, stream, strings.Join(found, "; "))
	}
	return nil
}

// sourceSubjects validates cfg's app and subjects and returns the
// subjects the source stream captures (none for a hub's) and the site
// sources it takes instead.
func sourceSubjects(cfg SourceConfig) ([]string, []*natsjs.StreamSource, error) {
	if err := ValidateApp(cfg.App); err != nil {
		return nil, nil, err
	}
	sources, err := siteStreamSources(cfg.App, cfg.Sites)
	if err != nil || len(sources) > 0 {
		return nil, sources, err
	}
	subjects, err := normalizeSubjects(cfg.Subjects)
	if err != nil {
		return nil, nil, fmt.Errorf("edgetables/jetstream: source of %s: %w", cfg.App, err)
	}
	for _, s := range subjects {
		if err := checkSourceSubject(cfg.App, s); err != nil {
			return nil, nil, err
		}
	}
	return subjects, nil, nil
}

// systemPrefixes are the first tokens of NATS's own subjects: JetStream's
// API and acknowledgements, its raft and cluster traffic, KV and object
// stores, the system account's, and reply inboxes. A source naming them
// would store the server's own traffic (or its own API's answers, in a
// loop). A leading wildcard (a hub's *.sensors.>) is not refused for them:
// it is how a subject is matched across sites.
var systemPrefixes = []string{"$JS", "$JSC", "$NRG", "$KV", "$O", "$OBJ", "$SYS", "$SRV", "_INBOX"}

// ValidateSourceSubject checks that an app may capture subj in its source
// stream: a valid subject, wildcards allowed, that overlaps neither the
// app's own subjects (changelog, commits, dead letters, queries, global
// tables) nor NATS's own ($JS, $KV, $SYS, _INBOX…). It needs no server.
func ValidateSourceSubject(app, subj string) error {
	if _, err := normalizeSubjects([]string{subj}); err != nil {
		return err
	}
	return checkSourceSubject(app, subj)
}

func checkSourceSubject(app, s string) error {
	for _, r := range reservedSubjects(app) {
		if subject.Collide(s, r) {
			return fmt.Errorf("%w: source subject %q of app %s overlaps the app's own subjects %q", ErrSubjectOverlap, s, app, r)
		}
	}
	first, _, _ := strings.Cut(s, ".")
	if slices.Contains(systemPrefixes, first) {
		return fmt.Errorf("%w: source subject %q is among NATS's own subjects (%s.>)", ErrSubjectOverlap, s, first)
	}
	return nil
}

// overlapping lists which subjects of the streams other than stream
// collide with subjects.
func overlapping(ctx context.Context, js natsjs.JetStream, stream string, subjects []string) ([]string, error) {
	var found []string
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		if info.Config.Name == stream {
			continue
		}
		for _, theirs := range info.Config.Subjects {
			for _, ours := range subjects {
				if subject.Collide(ours, theirs) {
					found = append(found, fmt.Sprintf("%q overlaps %q of stream %s", ours, theirs, info.Config.Name))
				}
			}
		}
	}
	return found, l.Err()
}

// normalizeSubjects validates subjects, drops duplicates and subjects
// covered by another one, and refuses partial overlaps. Order is kept.
func normalizeSubjects(subjects []string) ([]string, error) {
	if len(subjects) == 0 {
		return nil, fmt.Errorf("%w: no subjects", ErrBadName)
	}
	var out []string
	for i, s := range subjects {
		if err := subject.Valid(s); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadName, err)
		}
		covered := false
		for j, t := range subjects {
			if i == j {
				continue
			}
			// Drop s if t covers it; of equal subjects keep the first.
			if s == t && j < i || s != t && subject.Subset(s, t) {
				covered = true
				break
			}
		}
		if !covered && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for i, s := range out {
		for _, t := range out[i+1:] {
			if subject.Collide(s, t) {
				return nil, fmt.Errorf("%w: subjects %q and %q overlap partly; list one subject covering both", ErrSubjectOverlap, s, t)
			}
		}
	}
	return out, nil
}

// Subjects returns the subjects the source captures, after normalization.
func (s *Source) Subjects() []string { return slices.Clone(s.subjects) }

// Stream returns the source stream's name.
func (s *Source) Stream() string { return s.stream }

// Open starts a reader at sequence from (from the first message still
// stored if from <= 1 or from is below it; it waits for new messages if
// from is beyond the end). Each reader has a consumer of its own: a pull
// consumer with AckAll named <consumer>_<unique id>, one replica in memory,
// removed by the server after a minute without pulls. Opening deletes the
// previous reader's consumer (best effort, bounded by a second), after which
// the older reader fails with ErrReaderClosed; only one reader per Source
// should be open.
//
// Creating a consumer needs no leader but the meta leader's: neither
// deleting nor recreating a replicated durable consumer (which waits for the
// consumer's own leader, possibly on a paused node) is on the path of a
// reposition.
func (s *Source) Open(ctx context.Context, from uint64) (port.SourceReader, error) {
	return s.OpenReader(ctx, from)
}

// OpenReader is Open returning the concrete reader.
func (s *Source) OpenReader(ctx context.Context, from uint64) (*SourceReader, error) {
	s.mu.Lock()
	prev := s.last
	s.mu.Unlock()
	if prev == "" {
		prev = s.consumer // the durable consumer of earlier versions
	}
	dctx, cancel := context.WithTimeout(ctx, dropTimeout)
	err := s.js.DeleteConsumer(dctx, s.stream, prev)
	cancel()
	if err != nil && !errors.Is(err, natsjs.ErrConsumerNotFound) && ctx.Err() == nil {
		s.cfg.Logger.Debug("delete the previous reader's consumer; it expires when idle", "stream", s.stream, "consumer", prev, "err", err)
	}
	name := s.consumer + "_" + nuid.Next()
	cc := natsjs.ConsumerConfig{
		Name:              name,
		Description:       "edgetables source reader",
		DeliverPolicy:     natsjs.DeliverAllPolicy,
		AckPolicy:         natsjs.AckAllPolicy,
		AckWait:           SourceAckWait,
		MaxDeliver:        -1,
		MaxAckPending:     SourceMaxAckPending,
		ReplayPolicy:      natsjs.ReplayInstantPolicy,
		InactiveThreshold: readerIdle,
		Replicas:          1,
		MemoryStorage:     true,
	}
	if from > 1 {
		cc.DeliverPolicy = natsjs.DeliverByStartSequencePolicy
		cc.OptStartSeq = from
	}
	cons, err := s.js.CreateConsumer(ctx, s.stream, cc)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: create consumer %s of stream %s from %d: %w", name, s.stream, from, err)
	}
	s.mu.Lock()
	s.last = name
	s.mu.Unlock()
	r, err := newSourceReader(s.js.Conn(), cons, s.stream, name, s.cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: consume %s of stream %s: %w", name, s.stream, err)
	}
	return r, nil
}

// Trim removes every message with a sequence below seq. It uses a purge
// with a sequence, whose server semantics (filestore compact) are: remove
// the messages below seq; seq = 1 does nothing; seq = 0 (the field left
// out) would purge everything; seq beyond the last sequence + 1 would also
// move the stream's next sequence up to seq. Trim therefore ignores seq <= 1
// and clamps seq to the last sequence + 1 (it reads the stream state
// first), so it never renumbers the stream. Two requests.
func (s *Source) Trim(ctx context.Context, seq uint64) error {
	if seq <= 1 {
		return nil
	}
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("edgetables/jetstream: trim stream %s below %d: %w", s.stream, seq, err)
	}
	state := st.CachedInfo().State
	seq = min(seq, state.LastSeq+1)
	if seq <= state.FirstSeq {
		return nil
	}
	if err := st.Purge(ctx, natsjs.WithPurgeSequence(seq)); err != nil {
		return fmt.Errorf("edgetables/jetstream: trim stream %s below %d: %w", s.stream, seq, err)
	}
	return nil
}

// State returns the first and last sequences stored in the source stream
// (first = last+1 when it is empty after a trim; 0, 0 if never written) and
// its epoch: the stream's creation time in UTC, RFC 3339 with nanoseconds,
// which changes when the stream is deleted and created again, as the
// stream's leader answers: when only a replica answers (its state may
// lag), State fails with an error wrapping ErrLeaderless. One request.
func (s *Source) State(ctx context.Context) (port.SourceState, error) {
	info, err := streamInfo(ctx, s.js, s.stream, "")
	if err != nil {
		return port.SourceState{}, fmt.Errorf("edgetables/jetstream: state of stream %s: %w", s.stream, err)
	}
	return port.SourceState{First: info.State.FirstSeq, Last: info.State.LastSeq, Epoch: epochOf(info)}, nil
}

// epochOf is a stream's epoch: its creation time in UTC, RFC 3339 with
// nanoseconds.
func epochOf(info *natsjs.StreamInfo) string { return info.Created.UTC().Format(time.RFC3339Nano) }
