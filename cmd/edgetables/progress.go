package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgetables/edgetables/manager/status"
)

// barWidth is the number of cells of a progress bar.
const barWidth = 30

// printRecoveries writes a progress bar for every partition whose recovery
// (or standby catch-up) is running: changelog sequences applied of those to
// replay, the node's rate and ETA, and what it does or waits for. It writes
// nothing when none runs.
func printRecoveries(w io.Writer, parts []status.PartitionStatus, now time.Time) {
	first := true
	for _, p := range parts {
		rp := p.Recovery
		if rp == nil || !rp.Ended.IsZero() {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nrecovering:")
			first = false
		}
		kind := "active"
		if rp.Standby {
			kind = "standby"
		}
		var total uint64
		if rp.HighWater >= rp.From && rp.From > 0 {
			total = rp.HighWater - rp.From + 1
		}
		done := total - min(rp.RecordsRemaining, total)
		rate, eta := "-", "-"
		if rp.RatePerSecond > 0 {
			rate = fmt.Sprintf("%s/s", short(rp.RatePerSecond))
		}
		if rp.ETASeconds > 0 {
			eta = (time.Duration(rp.ETASeconds * float64(time.Second))).Round(time.Second).String()
		}
		phase := rp.Phase
		if idle := now.Sub(rp.LastProgress); !rp.LastProgress.IsZero() && idle >= 30*time.Second {
			phase += fmt.Sprintf(" (no progress for %s)", idle.Round(time.Second))
		}
		fmt.Fprintf(w, "  %3d %-7s %s %3.0f%%  %d/%d  %s  ETA %s  %s\n",
			p.Partition, kind, bar(done, total), percent(done, total), done, total, rate, eta, phase)
	}
}

// bar renders done of total as [####------].
func bar(done, total uint64) string {
	n := 0
	if total > 0 {
		n = int(done * barWidth / total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", barWidth-n) + "]"
}

func percent(done, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(done) * 100 / float64(total)
}

// short formats a rate with a k or M suffix.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
