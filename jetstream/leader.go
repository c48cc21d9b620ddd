package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

var _ port.LeaderMover = (*Changelog)(nil)

// MoveLeader asks partition p's stream to elect another leader when server
// from leads it: to if it is a current replica (a partition's standby),
// else any other (nats-server's choice). It reports whether it asked. A
// stream of one replica, or led by another server, is left alone. The
// server may still pick another replica than to (one it has not heard
// from lately); the caller checks again later.
func (c *Changelog) MoveLeader(ctx context.Context, p int, from, to string) (bool, error) {
	if err := c.checkPartition(p); err != nil {
		return false, err
	}
	stream := c.streams[p]
	info, err := streamInfo(ctx, c.js, stream, "")
	if err != nil {
		return false, fmt.Errorf("edgetables/jetstream: leader of partition %d (stream %s): %w", p, stream, err)
	}
	if info.Cluster == nil || info.Cluster.Leader != from || len(info.Cluster.Replicas) == 0 {
		return false, nil
	}
	var body []byte
	if to != "" && slices.ContainsFunc(info.Cluster.Replicas, func(r *natsjs.PeerInfo) bool {
		return r.Name == to && r.Current && !r.Offline
	}) {
		body, _ = json.Marshal(stepDownRequest{Placement: &stepDownPlacement{Preferred: to}})
	}
	msg, err := c.js.Conn().RequestWithContext(ctx, c.apiSubject("STREAM.LEADER.STEPDOWN."+stream), body)
	if err != nil {
		return false, fmt.Errorf("edgetables/jetstream: move the leader of partition %d (stream %s) off %s: %w", p, stream, from, err)
	}
	var resp struct {
		Success bool             `json:"success"`
		Error   *natsjs.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return false, fmt.Errorf("edgetables/jetstream: move the leader of partition %d (stream %s): answer %q: %w", p, stream, msg.Data, err)
	}
	if resp.Error != nil || !resp.Success {
		return false, fmt.Errorf("edgetables/jetstream: move the leader of partition %d (stream %s) off %s: %v", p, stream, from, resp.Error)
	}
	return true, nil
}

// stepDownRequest is the body of a stream leader step-down request
// (nats-server's JSApiLeaderStepdownRequest).
type stepDownRequest struct {
	Placement *stepDownPlacement `json:"placement,omitempty"`
}

type stepDownPlacement struct {
	Preferred string `json:"preferred,omitempty"`
}

// apiSubject is subject under the JetStream API prefix of c's context.
func (c *Changelog) apiSubject(subject string) string { return apiSubjectOf(c.js, subject) }
