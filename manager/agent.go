package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/subject"
)

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// Agent processes the events of its subjects, as a Faust agent processes a
// stream. Each event is processed once per agent, in the partition of the
// event's key, by the node that owns that partition; its table writes are
// committed together with the event's source position.
type Agent struct {
	// Name identifies the agent in logs, metrics and dead-letter subjects
	// (letters, digits, '_' and '-', at most 64).
	Name string
	// Subjects are the NATS subjects (wildcards allowed) the agent reads.
	// The source stream captures them.
	Subjects []string
	// Key returns the event's key, which picks its partition. Nil means the
	// subject is the key. An error sends the event to the dead-letter
	// subject.
	Key func(e *Event) ([]byte, error)
	// Process handles one event. Writes it made are dropped when it returns
	// an error, and the event goes to the dead-letter subject with the
	// error as the reason; processing goes on with the next event.
	Process func(e *Event) error
}

func (a *Agent) validate() error {
	if !agentNameRE.MatchString(a.Name) {
		return fmt.Errorf("agent name %q: want letters, digits, '_' and '-', at most 64", a.Name)
	}
	if len(a.Subjects) == 0 {
		return fmt.Errorf("agent %s: no subjects", a.Name)
	}
	for _, s := range a.Subjects {
		if err := subject.Valid(s); err != nil {
			return fmt.Errorf("agent %s: %w", a.Name, err)
		}
	}
	if a.Process == nil {
		return fmt.Errorf("agent %s: Process is nil", a.Name)
	}
	return nil
}

func (a *Agent) matches(subj string) bool {
	for _, f := range a.Subjects {
		if subject.Matches(f, subj) {
			return true
		}
	}
	return false
}

// Event is one source message as an agent sees it.
type Event struct {
	// Subject, Header, Data and Time are those of the source message.
	Subject string
	Header  map[string][]string
	Data    []byte
	Time    time.Time
	// Seq is the message's sequence in the source stream.
	Seq uint64
	// Key and Partition are the event's key and partition.
	Key       []byte
	Partition int

	ctx    context.Context
	msg    *message
	part   *partition
	writes []write // this event's writes, in order; merged on success
}

// message is one source message shared by the events of every agent that
// processes it, so that its JSON is decoded once.
type message struct {
	port.SourceMessage
	decoded  map[string]any
	parseErr error
	parsed   bool
}

type write struct {
	table  string
	key    string
	value  []byte
	delete bool
	ttl    time.Duration // Record.TTL
}

// Context returns the context of the processing run.
func (e *Event) Context() context.Context { return e.ctx }

// JSON returns the payload decoded as a JSON object (decoded once per
// message, shared by every agent; callers must not modify it). Numbers are
// json.Number.
func (e *Event) JSON() (map[string]any, error) {
	m := e.msg
	if m == nil { // an Event built outside the manager, as in a test
		m = &message{SourceMessage: port.SourceMessage{Data: e.Data}}
		e.msg = m
	}
	if !m.parsed {
		m.parsed = true
		dec := json.NewDecoder(bytes.NewReader(m.Data))
		dec.UseNumber()
		switch err := dec.Decode(&m.decoded); {
		case err != nil:
			m.parseErr = fmt.Errorf("payload is not a JSON object: %w", err)
		case m.decoded == nil:
			m.parseErr = fmt.Errorf("payload is not a JSON object")
		case !utf8.Valid(m.Data):
			// encoding/json would read each invalid byte as U+FFFD: two
			// device ids that differ in them would become one key.
			m.parseErr = fmt.Errorf("payload is not valid UTF-8, as JSON must be")
		default:
			// A second object would be lost without a word. Whitespace
			// and the NUL a C string ends with are not data.
			if rest := m.Data[dec.InputOffset():]; len(bytes.Trim(rest, " \t\r\n\x00")) > 0 {
				m.parseErr = fmt.Errorf("payload is not a JSON object: data after the object")
			}
		}
		if m.parseErr != nil {
			m.decoded = nil
		}
	}
	return m.decoded, m.parseErr
}

// Token returns the n-th token (1-based) of the subject, or "" when the
// subject has fewer tokens.
func (e *Event) Token(n int) string { return subject.Token(e.Subject, n) }

func (e *Event) get(table string, key []byte) ([]byte, bool, error) {
	if e.part == nil {
		return nil, false, fmt.Errorf("table %s: read outside an agent", table)
	}
	if PartitionOf(key, e.part.partitions) != e.Partition {
		return nil, false, fmt.Errorf("table %s: key %q: %w", table, key, ErrWrongPartition)
	}
	return e.getStored(table, key)
}

// getStored is get of a store key whose partition the caller checked (a
// window key lives in the partition of its plain key).
func (e *Event) getStored(table string, key []byte) ([]byte, bool, error) {
	if e.part == nil {
		return nil, false, fmt.Errorf("table %s: read outside an agent", table)
	}
	k := string(key)
	for i := len(e.writes) - 1; i >= 0; i-- {
		if w := e.writes[i]; w.table == table && w.key == k {
			return w.value, !w.delete, nil
		}
	}
	return e.part.get(table, key)
}

func (e *Event) put(table string, key, value []byte, del bool) error {
	if e.part == nil {
		return fmt.Errorf("table %s: write outside an agent", table)
	}
	if PartitionOf(key, e.part.partitions) != e.Partition {
		return fmt.Errorf("table %s: key %q in partition %d, event in %d: %w",
			table, key, PartitionOf(key, e.part.partitions), e.Partition, ErrWrongPartition)
	}
	return e.putStored(table, key, value, del)
}

// putStored is put of a store key whose partition the caller checked.
func (e *Event) putStored(table string, key, value []byte, del bool) error {
	if e.part == nil {
		return fmt.Errorf("table %s: write outside an agent", table)
	}
	if _, ok := e.part.m.tables[table]; !ok {
		return fmt.Errorf("%w: %s", ErrTableNotFound, table)
	}
	e.writes = append(e.writes, write{table: table, key: string(key), value: value, delete: del})
	return nil
}
