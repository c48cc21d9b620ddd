package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/codec"
)

// A global table of alert thresholds per device, written from anywhere (an
// operator's tool, any node) and read locally by the agent of every
// partition: a reading above its device's threshold counts as an alert.
func Example_globalTable() {
	thresholds := manager.NewGlobalTable(manager.TableConfig[string, float64]{
		Name: "thresholds", Keys: codec.String{}, Values: codec.Float64{},
		Default: func() float64 { return 100 }})
	alerts := manager.NewTable(manager.TableConfig[string, int64]{
		Name: "alerts", Keys: codec.String{}, Values: codec.Int64{}})
	agent := manager.Agent{
		Name:     "alert",
		Subjects: []string{"temp.*"},
		Key:      func(e *manager.Event) ([]byte, error) { return []byte(e.Token(2)), nil },
		Process: func(e *manager.Event) error {
			var r struct {
				Value float64 `json:"value"`
			}
			if err := json.Unmarshal(e.Data, &r); err != nil {
				return fmt.Errorf("%w: %v", manager.ErrBadEvent, err)
			}
			device := string(e.Key)
			limit, err := thresholds.Get(device)
			if err != nil || r.Value <= limit {
				return err
			}
			n, err := alerts.Get(e, device)
			if err != nil {
				return err
			}
			return alerts.Set(e, device, n+1)
		},
	}
	js, stop := runExample([]manager.Collection{thresholds, alerts}, agent)
	defer stop()
	ctx := context.Background()

	// d1 alerts above 30 °C; other devices above the default, 100.
	if err := thresholds.Set(ctx, "d1", 30); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range []struct{ subject, data string }{
		{"temp.d1", `{"value": 35}`}, {"temp.d2", `{"value": 35}`}, {"temp.d2", `{"value": 120}`},
	} {
		_, _ = js.Publish(ctx, m.subject, []byte(m.data))
	}
	var d1, d2 int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		d1, _, _ = alerts.Lookup(ctx, "d1")
		d2, _, _ = alerts.Lookup(ctx, "d2")
		if d1 == 1 && d2 == 1 {
			break
		}
	}
	limit, _ := thresholds.Get("d1")
	fmt.Println("alerts d1:", d1, "d2:", d2, "threshold of d1:", limit)
	// Output: alerts d1: 1 d2: 1 threshold of d1: 30
}
