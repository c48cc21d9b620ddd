package tabletest_test

import (
	"fmt"
	"testing"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/tabletest"
)

// BenchmarkWordCount feeds the word count 1,000 events per SendMessages
// call over 1,000 distinct words, committing after each call, and reports
// events/s.
func BenchmarkWordCount(b *testing.B) {
	for _, batch := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			counts, agent := wordCount()
			d, err := tabletest.New(tabletest.Config{Tables: []manager.Collection{counts}, Agents: []manager.Agent{agent}})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			words := make([][]byte, 1000)
			for i := range words {
				words[i] = fmt.Appendf(nil, "w%d", i)
			}
			msgs := make([]tabletest.Message, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				for j := range n {
					msgs[j] = tabletest.Message{Subject: "words", Data: words[(i+j)%len(words)]}
				}
				if err := d.SendMessages(msgs[:n]...); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
