package jetstream

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/edgetables/edgetables/manager/assign"
	"github.com/edgetables/edgetables/manager/port"
	"github.com/edgetables/edgetables/manager/status"
)

// Wire format versions of the documents this package writes to NATS. A
// version changes only when a reader of the previous version would
// misread a document of the new one; a field added with a default that
// means "as before" keeps the version. A reader accepts every version up
// to its own and treats a document without a version (written before
// versions were recorded) as version 1; a later version gives an error
// wrapping ErrWireVersion, which says to upgrade the reader.
// docs/ARCHITECTURE.md ("Persisted documents") lists every document.
const (
	// CommitMarkerVersion is the version of the commit marker on
	// <app>.commit.<p> (field "v").
	CommitMarkerVersion = 1
	// MemberStateVersion is the version of a member's state under
	// member.<node> in the group bucket (field "v").
	MemberStateVersion = 1
	// AssignmentVersion is the version of the assignment under
	// "assignment" in the group bucket (field "v").
	AssignmentVersion = 1
	// RecordVersion is the version of a changelog or global-table record
	// (subject, headers and value). Version 1 writes no version header:
	// a record carries HeaderVersion only from version 2 on, so records
	// cost no extra bytes.
	RecordVersion = 1
	// DeadLetterVersion is the version of a dead letter's headers
	// (HeaderVersion).
	DeadLetterVersion = 1
)

// HeaderVersion carries the wire version of a message whose document is
// its headers (a dead letter) or of a record of a later version than 1.
const HeaderVersion = "Edgetables-Version"

// wireVersion checks the version v of a doc document read from NATS
// against max, the last version this package reads, and returns it (0,
// absent, is 1).
func wireVersion(doc string, v, max int) (int, error) {
	switch {
	case v == 0:
		return 1, nil
	case v < 0 || v > max:
		return v, fmt.Errorf("%w: %s of version %d, this edgetables reads up to %d: upgrade it", ErrWireVersion, doc, v, max)
	}
	return v, nil
}

// headerVersion reads HeaderVersion's value h (the empty string is 1).
func headerVersion(doc, h string, max int) error {
	if h == "" {
		return nil
	}
	v, err := strconv.Atoi(h)
	if err != nil {
		return fmt.Errorf("%w: %s: %s %q", ErrWireVersion, doc, HeaderVersion, h)
	}
	_, err = wireVersion(doc, v, max)
	return err
}

// commitMarkerWire is the commit marker on the wire: the version, then
// every field of port.CommitMarker (embedded, so a field added there
// is written too; the golden test in wire_test.go shows any change).
type commitMarkerWire struct {
	V int `json:"v"`
	port.CommitMarker
}

// EncodeCommitMarker returns the JSON of m as written on <app>.commit.<p>.
func EncodeCommitMarker(m port.CommitMarker) ([]byte, error) {
	b, err := json.Marshal(commitMarkerWire{V: CommitMarkerVersion, CommitMarker: m})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: encode commit marker: %w", err)
	}
	return b, nil
}

// DecodeCommitMarker decodes a commit marker of this or an earlier version
// (a marker without "v" is version 1). An undecodable one gives an error
// wrapping ErrBadMarker; one of a later version, ErrWireVersion.
func DecodeCommitMarker(b []byte) (port.CommitMarker, error) {
	var w commitMarkerWire
	if err := json.Unmarshal(b, &w); err != nil {
		return port.CommitMarker{}, fmt.Errorf("%w: %w", ErrBadMarker, err)
	}
	if _, err := wireVersion("commit marker", w.V, CommitMarkerVersion); err != nil {
		return port.CommitMarker{}, err
	}
	return w.CommitMarker, nil
}

// memberStateWire is a member's state on the wire (see commitMarkerWire).
type memberStateWire struct {
	V int `json:"v"`
	status.MemberState
}

// EncodeMemberState returns the JSON of st as written under member.<node>.
func EncodeMemberState(st status.MemberState) ([]byte, error) {
	b, err := json.Marshal(memberStateWire{V: MemberStateVersion, MemberState: st})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: encode member state of %s: %w", st.Node, err)
	}
	return b, nil
}

// DecodeMemberState decodes a member's state of this or an earlier version.
func DecodeMemberState(b []byte) (status.MemberState, error) {
	var w memberStateWire
	if err := json.Unmarshal(b, &w); err != nil {
		return status.MemberState{}, fmt.Errorf("edgetables/jetstream: member state: %w", err)
	}
	if _, err := wireVersion("member state", w.V, MemberStateVersion); err != nil {
		return status.MemberState{}, err
	}
	return w.MemberState, nil
}

// assignmentWire is the assignment on the wire (see commitMarkerWire).
type assignmentWire struct {
	V int `json:"v"`
	assign.Assignment
}

// EncodeAssignment returns the JSON of a as written under "assignment".
func EncodeAssignment(a assign.Assignment) ([]byte, error) {
	b, err := json.Marshal(assignmentWire{V: AssignmentVersion, Assignment: a})
	if err != nil {
		return nil, fmt.Errorf("edgetables/jetstream: encode assignment of generation %d: %w", a.Generation, err)
	}
	return b, nil
}

// DecodeAssignment decodes an assignment of this or an earlier version.
func DecodeAssignment(b []byte) (assign.Assignment, error) {
	var w assignmentWire
	if err := json.Unmarshal(b, &w); err != nil {
		return assign.Assignment{}, fmt.Errorf("edgetables/jetstream: assignment: %w", err)
	}
	if _, err := wireVersion("assignment", w.V, AssignmentVersion); err != nil {
		return assign.Assignment{}, err
	}
	return w.Assignment, nil
}
