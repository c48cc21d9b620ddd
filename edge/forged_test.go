package edge

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestForgedChangelogMessages: messages in the changelogs that are no
// records (a client allowed the app's subjects published them) are
// skipped: the partitions they land in recover, keep counting exactly,
// and recover again after a restart. (Before, one such message failed
// every recovery of its partition for good.)
func TestForgedChangelogMessages(t *testing.T) {
	dir := t.TempDir()
	spec := "name=c,source=s.*,key=subject:2,agg=count"
	n, stop := startNode(t, dir, spec)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	for _, k := range keys {
		publish(t, n, "s."+k, `{}`)
	}
	for _, k := range keys {
		waitValue(t, n, "c", k, "1")
	}
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		for _, subj := range []string{
			fmt.Sprintf("edgetables.changelog.%d.c.!!!bad", p),
			fmt.Sprintf("edgetables.changelog.%d.nodot", p),
		} {
			if err := nc.Publish(subj, []byte("garbage")); err != nil {
				t.Fatal(err)
			}
		}
	}
	nc.Close()
	for _, k := range keys {
		publish(t, n, "s."+k, `{}`)
	}
	for _, k := range keys {
		waitValue(t, n, "c", k, "2")
	}
	stop()

	n, _ = startNode(t, dir, spec)
	for _, k := range keys {
		publish(t, n, "s."+k, `{}`)
	}
	for _, k := range keys {
		waitValue(t, n, "c", k, "3")
	}
}
