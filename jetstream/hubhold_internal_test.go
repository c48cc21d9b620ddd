package jetstream

import (
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestStaleTaken: a site trims by the hub's position only when the hub's
// sourcing heard from the site after the site's source stream was created,
// and the position lies within the stream.
func TestStaleTaken(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	stream := func(created time.Time, last uint64) *natsjs.StreamInfo {
		return &natsjs.StreamInfo{Created: created, State: natsjs.StreamState{LastSeq: last}}
	}
	cases := []struct {
		name   string
		taken  uint64
		active time.Duration
		info   *natsjs.StreamInfo
		want   string // "" or a part of the reason
	}{
		{"heard from the stream just now", 40, 700 * time.Millisecond, stream(now.Add(-time.Hour), 50), ""},
		{"link down a while, same stream", 40, 10 * time.Minute, stream(now.Add(-time.Hour), 50), ""},
		{"taken everything", 50, time.Second, stream(now.Add(-time.Hour), 50), ""},
		{"last heard before the stream was created", 20, 30 * time.Second, stream(now.Add(-10*time.Second), 5), "before this source stream was created"},
		{"last heard before, with more events since", 20, 30 * time.Second, stream(now.Add(-10*time.Second), 25), "before this source stream was created"},
		{"beyond the stream's last sequence", 20, time.Second, stream(now.Add(-time.Hour), 5), "beyond this source stream's last"},
		{"never heard since the hub started", 20, -1, stream(now.Add(-time.Hour), 50), "has not heard"},
		{"local stream unknown", 20, time.Second, nil, "could not be read"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := staleTaken(c.taken, c.active, c.info, now)
			if (got == "") != (c.want == "") || !strings.Contains(got, c.want) {
				t.Errorf("staleTaken = %q, want %q", got, c.want)
			}
		})
	}
}
