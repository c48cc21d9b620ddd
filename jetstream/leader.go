package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/manager/port"
)

var (
	_ port.LeaderMover     = (*Changelog)(nil)
	_ port.LogLeaderPlacer = (*Group)(nil)
)

// LeadLogHere makes the server named after this member's node lead the
// group bucket's stream, if another leads it and that server holds a
// current replica (an embedded cluster's node; with --nats-url no server
// has the node's name and nothing is asked). It reports whether it asked.
// The group's leader calls it: when its node dies, the election of the
// bucket's leader then overlaps the expiry of its leader lease, which a
// new leader waits for anyway.
func (g *Group) LeadLogHere(ctx context.Context) (bool, error) {
	info, err := streamInfo(ctx, g.js, g.stream, "")
	if err != nil {
		return false, fmt.Errorf("edgetables/jetstream: leader of the group bucket's stream %s: %w", g.stream, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == g.node || !currentReplica(info, g.node) {
		return false, nil
	}
	if err := stepDownStream(ctx, g.js, g.stream, g.node); err != nil {
		return false, fmt.Errorf("edgetables/jetstream: move the leader of the group bucket's stream %s from %s to %s: %w", g.stream, info.Cluster.Leader, g.node, err)
	}
	return true, nil
}

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
	preferred := ""
	if to != "" && currentReplica(info, to) {
		preferred = to
	}
	if err := stepDownStream(ctx, c.js, stream, preferred); err != nil {
		return false, fmt.Errorf("edgetables/jetstream: move the leader of partition %d (stream %s) off %s: %w", p, stream, from, err)
	}
	return true, nil
}

// currentReplica says whether server is a follower of the stream of info
// that is online and caught up.
func currentReplica(info *natsjs.StreamInfo, server string) bool {
	return info.Cluster != nil && slices.ContainsFunc(info.Cluster.Replicas, func(r *natsjs.PeerInfo) bool {
		return r.Name == server && r.Current && !r.Offline
	})
}

// stepDownStream asks stream's leader to step down in favour of the
// replica on server preferred ("": any, nats-server's choice).
func stepDownStream(ctx context.Context, js natsjs.JetStream, stream, preferred string) error {
	var body []byte
	if preferred != "" {
		body, _ = json.Marshal(stepDownRequest{Placement: &stepDownPlacement{Preferred: preferred}})
	}
	msg, err := js.Conn().RequestWithContext(ctx, apiSubjectOf(js, "STREAM.LEADER.STEPDOWN."+stream), body)
	if err != nil {
		return err
	}
	var resp struct {
		Success bool             `json:"success"`
		Error   *natsjs.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("answer %q: %w", msg.Data, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if !resp.Success {
		return errors.New("step-down not done")
	}
	return nil
}

// stepDownRequest is the body of a stream leader step-down request
// (nats-server's JSApiLeaderStepdownRequest).
type stepDownRequest struct {
	Placement *stepDownPlacement `json:"placement,omitempty"`
}

type stepDownPlacement struct {
	Preferred string `json:"preferred,omitempty"`
}
