package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// diskMetrics is a Prometheus collector of the space on the file system of
// a node's data directory (JetStream's storage and the table stores), read
// with statfs at scrape time.
type diskMetrics struct {
	dir        string
	free, size *prometheus.Desc
}

// newDiskMetrics returns the collector of dir's file system.
func newDiskMetrics(dir string) *diskMetrics {
	return &diskMetrics{dir: dir,
		free: prometheus.NewDesc("edgetables_data_dir_free_bytes",
			"Bytes free for the node (not the superuser's reserve) on the file system of its data directory.", nil, nil),
		size: prometheus.NewDesc("edgetables_data_dir_size_bytes",
			"Size in bytes of the file system of the node's data directory.", nil, nil),
	}
}

// Describe sends the descriptions of both metrics.
func (d *diskMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.free
	ch <- d.size
}

// Collect sends both metrics, or none when the file system cannot be read
// (an invalid metric says why on the scrape).
func (d *diskMetrics) Collect(ch chan<- prometheus.Metric) {
	free, size, err := diskSpace(d.dir)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(d.free, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(d.free, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(d.size, prometheus.GaugeValue, float64(size))
}
