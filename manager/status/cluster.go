package status

import (
	"github.com/edgetables/edgetables/manager/assign"
	"time"
)

// ClusterStatus is the group as this node sees it (manager.TableManager.Cluster),
// served in GET /v1/status as "cluster".
type ClusterStatus struct {
	Leader     string            `json:"leader"`
	Generation uint64            `json:"generation"`
	Applied    uint64            `json:"applied_generation"`
	Members    []MemberState     `json:"members"`
	Assignment assign.Assignment `json:"assignment"`
}

// MemberState is what a member publishes about itself under its lease in the
// group (package jetstream stores it as a versioned document, golden file
// jetstream/testdata/member-state-v1.json), and how ClusterStatus lists the
// members.
type MemberState struct {
	Node string `json:"node"`
	// Generation is the assignment generation the member has applied.
	Generation uint64 `json:"generation"`
	// Actives are the partitions the member processes now; a partition it
	// gave up is absent (released), so its next owner may take it.
	Actives []int `json:"actives"`
	// Standbys are the partitions the member keeps warm.
	Standbys []int `json:"standbys,omitempty"`
	// Positions is the committed source position of each active partition.
	Positions map[int]uint64 `json:"positions,omitempty"`
	// HTTP is the member's HTTP API address, for status displays.
	HTTP string `json:"http,omitempty"`
	// Instance identifies this run of the member (random, new at every
	// start) and Started is when it started: two live instances under one
	// name are told apart by them, and the later one stops.
	Instance string    `json:"instance,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	// Probe is an address ("host:port") that the member's own process
	// listens on, its embedded server's route port: a refused connection
	// there tells a peer that the process is gone, sooner than its lease
	// would. Empty when the member runs no embedded cluster server. An
	// unspecified host (0.0.0.0) stands for the address the member's
	// routes come from.
	Probe string `json:"probe,omitempty"`
}
