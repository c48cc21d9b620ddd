package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/self/stat times:
// 100 on every Linux platform Go runs on.
const clockTicks = 100

// cpuSample is the machine's busy CPU time and this process's CPU time, in
// clock ticks, at a moment.
type cpuSample struct {
	busy, self uint64
	at         time.Time
	ok         bool
}

// sampleCPU reads /proc/stat and /proc/self/stat; ok is false elsewhere.
func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait are busy (guest time is inside user).
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s
		}
		s.busy += n
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return s
	}
	// The command may hold spaces: fields count from after its ')'.
	i := strings.LastIndexByte(string(self), ')')
	if i < 0 {
		return s
	}
	g := strings.Fields(string(self[i+1:]))
	if len(g) < 13 {
		return s
	}
	ut, err1 := strconv.ParseUint(g[11], 10, 64)
	st, err2 := strconv.ParseUint(g[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s
	}
	s.self, s.ok = ut+st, true
	return s
}

// minSampled is the shortest phase otherCPU judges: the times count in
// 10 ms ticks.
const minSampled = 250 * time.Millisecond

// otherCPU returns the share of the machine's CPUs (0 to 1) that other
// processes (and steal) used between a and b, or -1 when unknown (no
// /proc, or less than minSampled apart).
func otherCPU(a, b cpuSample) float64 {
	el := b.at.Sub(a.at)
	if !a.ok || !b.ok || el < minSampled || b.busy < a.busy {
		return -1
	}
	other := float64(b.busy-a.busy) - float64(b.self-a.self)
	return min(max(other, 0)/(el.Seconds()*clockTicks*float64(runtime.NumCPU())), 1)
}

// otherNote describes other processes' CPU use in a measured phase, for
// notes.
func otherNote(share float64) string {
	if share < 0 {
		return "unknown"
	}
	return strconv.Itoa(int(share*100+0.5)) + "%"
}

// otherMax returns the largest known share, or nil when none is known.
func otherMax(shares ...float64) *float64 {
	var m *float64
	for _, s := range shares {
		if s >= 0 && (m == nil || s > *m) {
			m = ptr(s)
		}
	}
	return m
}
