package manager

import "time"

// SetProgressLogTiming makes m's recovery log its progress every every and
// warn about partitions without progress for stall (before Run).
func SetProgressLogTiming(m *TableManager, every, stall time.Duration) {
	m.recovery.logEvery, m.recovery.stallAfter = every, stall
}
