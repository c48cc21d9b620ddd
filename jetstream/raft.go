package jetstream

import (
	"errors"
	"fmt"
	"sync"
	"time"
	_ "unsafe" // go:linkname, for nats-server's raft timers
)

// nats-server v2.15.2 keeps the timers of its raft groups (the meta group,
// every replicated stream and consumer) in package variables, with no
// option to set them: a follower that hears nothing from its leader for a
// random 4 to 9 s calls an election, and a leader sends a heartbeat every
// second. The server's own tests shorten them by assigning the variables;
// an embedded server reaches them the same way, through go:linkname. The
// build fails if a future server version renames them (go.mod pins it).

//go:linkname raftMinElectionTimeout github.com/nats-io/nats-server/v2/server.minElectionTimeout
var raftMinElectionTimeout time.Duration

//go:linkname raftMaxElectionTimeout github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var raftMaxElectionTimeout time.Duration

//go:linkname raftHeartbeat github.com/nats-io/nats-server/v2/server.hbInterval
var raftHeartbeat time.Duration

// DefaultElectionTimeout is nats-server's own shortest election timeout:
// the ServerConfig.ElectionTimeout of 0.
const DefaultElectionTimeout = 4 * time.Second

// MinElectionTimeout is the shortest ServerConfig.ElectionTimeout accepted.
// Below it, a follower on a loaded machine that misses a few heartbeats
// (each a quarter of the timeout apart) calls needless elections.
const MinElectionTimeout = 500 * time.Millisecond

// ErrElectionTimeoutInUse is returned by StartServer when another embedded
// server of this process runs with a different ElectionTimeout: the timers
// are the process's, not a server's.
var ErrElectionTimeoutInUse = errors.New("edgetables/jetstream: another embedded server of this process runs with a different election timeout")

// raftTimers counts the embedded servers running in this process and the
// election timeout they run with.
var raftTimers struct {
	sync.Mutex
	running int
	timeout time.Duration // 0 until the first server sets it
}

// raftTimings returns the raft timers for an election timeout d (0: the
// server's defaults): elections after a random d to 2.25 d of silence, and
// heartbeats every d/4, the proportions of the defaults.
func raftTimings(d time.Duration) (minElect, maxElect, heartbeat time.Duration) {
	if d == 0 {
		d = DefaultElectionTimeout
	}
	return d, d * 9 / 4, d / 4
}

// checkElectionTimeout checks a ServerConfig.ElectionTimeout.
func checkElectionTimeout(d time.Duration) error {
	if d != 0 && d < MinElectionTimeout {
		return fmt.Errorf("edgetables/jetstream: election timeout %s: want 0 (the server's %s) or at least %s", d, DefaultElectionTimeout, MinElectionTimeout)
	}
	return nil
}

// acquireRaftTimers sets the process's raft timers for a server about to
// start with election timeout d, or fails if servers run with another
// one. Each successful call is paired with releaseRaftTimers when the
// server has shut down.
func acquireRaftTimers(d time.Duration) error {
	if d == 0 {
		d = DefaultElectionTimeout
	}
	raftTimers.Lock()
	defer raftTimers.Unlock()
	if raftTimers.running > 0 && raftTimers.timeout != d {
		return fmt.Errorf("%w: %s, not %s", ErrElectionTimeoutInUse, raftTimers.timeout, d)
	}
	if raftTimers.timeout != d {
		// No server runs: no raft goroutine reads the timers now.
		raftMinElectionTimeout, raftMaxElectionTimeout, raftHeartbeat = raftTimings(d)
		raftTimers.timeout = d
	}
	raftTimers.running++
	return nil
}

// releaseRaftTimers undoes one acquireRaftTimers.
func releaseRaftTimers() {
	raftTimers.Lock()
	raftTimers.running--
	raftTimers.Unlock()
}
