package jetstream

import (
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// StorageState is the state of an embedded server's JetStream file
// storage, as Server.Storage reports it.
type StorageState struct {
	// Used is the bytes the server's streams hold on disk, and Max its
	// limit (ServerConfig.MaxStore). The server refuses every publish to a
	// file stream (error 10023, "insufficient resources") while Used
	// exceeds Max, and accepts them again once it does not: removing
	// messages (a purge, a trim, a deleted stream) is enough.
	Used, Max uint64
	// WriteErrors are the streams' write errors (for example "no space
	// left on device" when the disk filled before Max was reached). A
	// stream keeps its write error, and refuses every write, until the
	// server restarts, even after space is freed.
	WriteErrors []string
}

// Full reports whether the server refuses publishes for want of space:
// Used exceeds Max.
func (st StorageState) Full() bool { return st.Used > st.Max }

// Storage returns the server's storage state. It reads the server's
// counters and walks its stream directories (the server's health check):
// cheap enough for once a second.
func (s *Server) Storage() (StorageState, error) {
	info, err := s.ns.Jsz(&server.JSzOptions{})
	if err != nil {
		return StorageState{}, err
	}
	st := StorageState{Used: info.Store, Max: uint64(max(info.Config.MaxStore, 0))}
	h := s.ns.Healthz(&server.HealthzOptions{Details: true})
	if h == nil {
		return st, nil
	}
	if strings.Contains(h.Error, "write error") {
		st.WriteErrors = append(st.WriteErrors, h.Error)
	}
	for _, e := range h.Errors {
		if strings.Contains(e.Error, "write error") {
			st.WriteErrors = append(st.WriteErrors, e.Error)
		}
	}
	return st, nil
}
