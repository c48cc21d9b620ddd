package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/status"
)

// standbyLagTimeout bounds the changelog requests a scrape makes to measure
// the standbys' lag.
const standbyLagTimeout = 2 * time.Second

// Metrics is a Prometheus collector of a table manager's figures. It reads
// status.Status (and, for standbys, the changelogs' ends) at scrape time,
// so it adds nothing to the processing path. The metrics are documented in
// the README.
type Metrics struct {
	m   *manager.TableManager
	log *slog.Logger
	// storage, when set, makes ready 0 while writes fail for want of space
	// and sets storageFailing.
	storage Storage

	storageFailing *prometheus.Desc
	leaderMoves    *prometheus.Desc

	events, records, commits, commitSeconds, rebalances, generation, ready,
	deadLetters, deadLetterReasons, commitFailures, taskFailures, takenBack, uncommitted, pending, unknown, sourceGaps, markerRegressions, sourceResets, changelogBehind, partitions, remaining, standbyLag, globalApplied, globalLag *prometheus.Desc
}

// NewMetrics returns the collector of m's metrics.
func NewMetrics(m *manager.TableManager, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("edgetables_"+name, help, labels, nil)
	}
	return &Metrics{m: m, log: log,
		events:            d("events_processed_total", "Events the agents handled without error."),
		records:           d("changelog_records_written_total", "Changelog records this node wrote (commit markers not counted)."),
		commits:           d("commits_total", "Commits that wrote at least one partition."),
		commitSeconds:     d("commit_duration_seconds", "Duration of a commit: changelog append and store transaction of every partition."),
		rebalances:        d("rebalances_total", "Rebalances applied (a single node applies one at start)."),
		generation:        d("assignment_generation", "Assignment generation this node applied."),
		ready:             d("ready", "1 when every active partition is recovered and processing, else 0."),
		storageFailing:    d("storage_writes_failing", "1 while the embedded server's JetStream storage refuses writes (full, or a disk write error), else 0."),
		deadLetters:       d("dead_letters_total", "Events refused by an agent and sent to the dead-letter subject.", "agent"),
		deadLetterReasons: d("dead_letters_by_reason_total", "Events refused, by kind of reason: key (no key), agent (the agent failed), limit (writes too large to commit).", "reason"),
		commitFailures:    d("commit_failures_total", "Failed partition commits: fenced (another writer owns the changelog) or other (retried).", "reason"),
		taskFailures:      d("partition_task_failures_total", "Failed attempts of partition recoveries (task=recover) and standby replays (task=standby); each is retried with a growing pause.", "task"),
		takenBack:         d("partitions_taken_back_total", "Partitions taken back by a replay after a fence."),
		leaderMoves:       d("changelog_leader_moves_total", "Partition changelogs whose stream leader this node, their active owner, moved to a standby (so that its death needs no election of their leader)."),
		uncommitted:       d("source_uncommitted_events", "Source sequences an active partition has been read past but not committed (examined less committed position).", "partition"),
		pending:           d("source_pending_events", "Source sequences stored but not yet read by this node (one request per scrape)."),
		unknown:           d("unknown_records_total", "Replayed changelog records of tables this node does not declare (skipped)."),
		sourceGaps:        d("source_gap_events_total", "Source events removed before a partition processed them (their effects are lost; must stay 0)."),
		markerRegressions: d("changelog_marker_regressions_total", "Replayed commit markers whose source position went back (a writer that was not fenced; must stay 0)."),
		changelogBehind:   d("changelog_behind_total", "Partitions found with a changelog behind their store (deleted, or restored from an older backup); each is also logged, and /readyz names the partitions stopped for it."),
		sourceResets:      d("source_resets_total", "Partition source positions moved because the source stream was created again or lost its tail (each is logged as an error)."),
		partitions:        d("partitions", "Partitions assigned to this node, by state.", "state"),
		remaining:         d("recovery_records_remaining", "Changelog sequences a partition's recovery has left to replay (0 once recovered).", "partition"),
		standbyLag:        d("standby_lag_records", "Changelog sequences a standby partition's store is behind the log's end.", "partition"),
		globalApplied:     d("global_applied_offset", "Last global log sequence in this node's copy of the global tables."),
		globalLag:         d("global_lag_records", "Global log sequences this node's copy of the global tables is behind the log's end."),
	}
}

// Describe sends the descriptions of every metric.
func (c *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.records, c.commits, c.commitSeconds, c.rebalances, c.generation,
		c.ready, c.storageFailing, c.deadLetters, c.deadLetterReasons, c.commitFailures, c.taskFailures, c.takenBack, c.leaderMoves, c.uncommitted, c.pending, c.unknown, c.sourceGaps, c.markerRegressions, c.sourceResets, c.changelogBehind, c.partitions, c.remaining, c.standbyLag, c.globalApplied, c.globalLag} {
		ch <- d
	}
}

// Collect reads the manager's status and sends the metrics. It costs one
// changelog state request per standby partition (and one for the global
// log), bounded by 2 s.
func (c *Metrics) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Status()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.events, st.EventsProcessed)
	counter(c.records, st.ChangelogRecords)
	counter(c.commits, st.Commits)
	h := st.CommitLatency
	ch <- prometheus.MustNewConstHistogram(c.commitSeconds, h.Count, h.Sum.Seconds(), h.Cumulative())
	counter(c.rebalances, st.Rebalances)
	gauge(c.generation, float64(st.Generation))
	failing := len(storageReasons(c.storage)) > 0
	gauge(c.ready, b2f(st.Ready && !failing))
	if c.storage != nil {
		gauge(c.storageFailing, b2f(failing))
	}
	for agent, n := range st.DeadLetters {
		counter(c.deadLetters, n, agent)
	}
	for kind, n := range st.DeadLetterReasons {
		counter(c.deadLetterReasons, n, kind)
	}
	counter(c.commitFailures, st.CommitsFenced, "fenced")
	counter(c.commitFailures, st.CommitsFailed, "other")
	counter(c.takenBack, st.TakenBack)
	counter(c.leaderMoves, st.LeaderMoves)
	counter(c.taskFailures, st.RecoveryFailures, "recover")
	counter(c.taskFailures, st.StandbyFailures, "standby")
	counter(c.unknown, st.UnknownRecords)
	counter(c.sourceGaps, st.SourceGaps)
	counter(c.markerRegressions, st.MarkerRegressions)
	counter(c.sourceResets, st.SourceResets)
	counter(c.changelogBehind, st.ChangelogBehind)

	states := map[status.PartitionState]int{status.StateRecovering: 0, status.StateActive: 0,
		status.StateStandby: 0, status.StateFenced: 0}
	for _, p := range st.Partitions {
		states[p.State]++
		left := uint64(0)
		if rp := p.Recovery; rp != nil && rp.Ended.IsZero() {
			left = rp.RecordsRemaining
		}
		if p.State != status.StateStandby {
			gauge(c.remaining, float64(left), strconv.Itoa(p.Partition))
		}
		if p.State == status.StateActive {
			gauge(c.uncommitted, float64(st.ExaminedSeq-min(p.SourceSeq, st.ExaminedSeq)), strconv.Itoa(p.Partition))
		}
	}
	for s, n := range states {
		gauge(c.partitions, float64(n), string(s))
	}

	ctx, cancel := context.WithTimeout(context.Background(), standbyLagTimeout)
	defer cancel()
	lags, err := c.m.StandbyLags(ctx)
	if err != nil {
		c.log.Warn("metrics: standby lag of some partitions unknown", "err", err)
	}
	for p, lag := range lags {
		gauge(c.standbyLag, float64(lag), strconv.Itoa(p))
	}
	if n, err := c.m.SourcePending(ctx); err != nil {
		c.log.Warn("metrics: source events pending unknown", "err", err)
	} else {
		gauge(c.pending, float64(n))
	}
	if st.Global != nil {
		gauge(c.globalApplied, float64(st.Global.AppliedOffset))
		if lag, err := c.m.GlobalLag(ctx); err != nil {
			c.log.Warn("metrics: global tables' lag unknown", "err", err)
		} else {
			gauge(c.globalLag, float64(lag))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves m's metrics (with storage's state, if set) with
// the Go runtime's, the process's and extra ones, in the Prometheus text
// format.
func metricsHandler(m *manager.TableManager, log *slog.Logger, storage Storage, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	mc := NewMetrics(m, log)
	mc.storage = storage
	reg.MustRegister(mc, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
