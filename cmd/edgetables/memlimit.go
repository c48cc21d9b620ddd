package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kong"
)

// autoMemoryShare is the share of the cgroup's memory cap that
// --memory-limit auto gives the Go runtime. The rest is for what the
// runtime does not count (the page cache of the stores and streams, which
// the kernel charges to the cgroup) and for the collector's lag: under a
// cap without a soft limit, a node working through a backlog grows its
// heap by --gc-percent over the live heap and is killed by the kernel, and
// again after a restart while the backlog is large (docs/deploy.md).
const autoMemoryShare = 0.8

// memoryLimit is --memory-limit: auto, a size, or 0 for none.
type memoryLimit struct {
	auto  bool
	bytes int64
}

// String writes the limit as the flag takes it.
func (m memoryLimit) String() string {
	if m.auto {
		return "auto"
	}
	return strconv.FormatInt(m.bytes, 10)
}

// UnmarshalText parses auto, a size such as 400MiB, or 0.
func (m *memoryLimit) UnmarshalText(text []byte) error {
	if strings.EqualFold(strings.TrimSpace(string(text)), "auto") {
		*m = memoryLimit{auto: true}
		return nil
	}
	var b byteSize
	if err := b.UnmarshalText(text); err != nil {
		return fmt.Errorf("%q: want auto, 0 or a size such as 400MiB", text)
	}
	*m = memoryLimit{bytes: int64(b)}
	return nil
}

// Decode reads the limit from the command line or a configuration file,
// where it may be a number.
func (m *memoryLimit) Decode(ctx *kong.DecodeContext) error {
	return decodeSize(ctx, m, "want auto, 0 or a size such as 400MiB")
}

// memoryCap returns the memory cap of the process's cgroup (v1 or v2),
// memlimit.ErrNoLimit if it has none.
type memoryCap func() (uint64, error)

// resolve returns the soft memory limit m asks for and where it comes from:
// the flag's size; else for auto, unless GOMEMLIMIT is set (the runtime
// has applied it), autoMemoryShare of the cgroup's cap. It returns 0 when
// none is to be set. err is a cap that could not be read, for the log: the
// node runs without a limit then.
func (m memoryLimit) resolve(capOf memoryCap) (limit int64, from string, err error) {
	switch {
	case m.bytes > 0:
		return m.bytes, "--memory-limit", nil
	case !m.auto || os.Getenv("GOMEMLIMIT") != "":
		return 0, "", nil
	}
	c, err := capOf()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit):
		return 0, "", nil
	case err != nil:
		return 0, "", err
	case c == 0 || c >= math.MaxInt64:
		return 0, "", nil
	}
	return int64(float64(c) * autoMemoryShare), fmt.Sprintf("%.0f%% of the cgroup's memory cap of %d bytes", 100*autoMemoryShare, c), nil
}

// setMemoryLimit applies --memory-limit.
func (r *runCmd) setMemoryLimit(log *slog.Logger) {
	limit, from, err := r.MemoryLimit.resolve(memlimit.FromCgroup)
	switch {
	case errors.Is(err, memlimit.ErrNoCgroup) || errors.Is(err, memlimit.ErrCgroupsNotSupported):
		log.Debug("no memory limit: no cgroup", "err", err)
		return
	case err != nil:
		log.Warn("no memory limit: the cgroup's memory cap is unreadable; set --memory-limit under a cap", "err", err)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("memory limit set", "bytes", limit, "from", from)
	}
}
