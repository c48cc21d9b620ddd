package jetstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/edgetables/edgetables/jetstream"
	"github.com/edgetables/edgetables/jetstream/jstest"
	"github.com/edgetables/edgetables/manager/port"
)

func records(n, keyOffset int) []port.Record {
	recs := make([]port.Record, n)
	val := make([]byte, 100)
	for i := range recs {
		recs[i] = port.Record{Table: "t", Key: fmt.Appendf(nil, "key-%08d", keyOffset+i), Value: val}
	}
	return recs
}

// BenchmarkAppend appends 9,000 records of 100 bytes (over 9,000 keys, so
// the log stays compacted) and a marker per operation: at least once as
// one fast batch (the default) and, for comparison, as atomic batches of
// 1,000 (a stream that refuses fast batches); exactly once as one atomic
// batch (the embedded server's max_batch_size, 10,000).
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name           string
		atomic, noFast bool
	}{
		{"at-least-once/fast-batch", false, false},
		{"at-least-once/atomic-batches", false, true},
		{"exactly-once/atomic-batch", true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, _, js := jstest.Start(b)
			ctx := context.Background()
			cfg := jetstream.ChangelogConfig{App: app, Partitions: 1, Atomic: bc.atomic, Logger: slog.New(slog.DiscardHandler)}
			if bc.atomic {
				cfg.MaxBatch = jetstream.EmbeddedMaxAtomicBatch
			}
			cl, err := jetstream.NewChangelog(ctx, js, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if bc.noFast {
				st, err := js.Stream(ctx, cl.Stream(0))
				if err != nil {
					b.Fatal(err)
				}
				sc := st.CachedInfo().Config
				sc.AllowBatchPublish = false
				if _, err := js.UpdateStream(ctx, sc); err != nil {
					b.Fatal(err)
				}
			}
			recs := records(9000, 0)
			var last uint64
			for b.Loop() {
				if last, err = cl.Append(ctx, 0, last, recs, port.CommitMarker{SourceSeq: last}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkReplay replays a partition of 200,000 live records of 100 bytes
// (and the one marker compaction keeps) per operation, in batches of 1000.
func BenchmarkReplay(b *testing.B) {
	_, _, js := jstest.Start(b)
	cl := newChangelog(b, js, 1)
	ctx := context.Background()
	var last uint64
	for i := 0; i < 20; i++ {
		var err error
		if last, err = cl.Append(ctx, 0, last, records(10000, i*10000), port.CommitMarker{SourceSeq: uint64(i)}); err != nil {
			b.Fatal(err)
		}
	}
	var n int
	for b.Loop() {
		n = 0
		err := cl.Replay(ctx, 0, 1, last, 1000, func(es []port.Entry) error {
			n += len(es)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != 200001 { // 200,000 records and the last marker (markers share a subject)
			b.Fatalf("replayed %d entries", n)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkSourceRead opens the source at 1 and reads 200,000 messages of 100
// bytes per operation with Next(10000, 5s), acking every 10,000 messages (as
// commits would).
func BenchmarkSourceRead(b *testing.B) {
	_, _, js := jstest.Start(b)
	src := newSource(b, js, "in.>")
	const n = 200000
	publishN(b, js, "in.a", n, 100)
	ctx := context.Background()
	for b.Loop() {
		r, err := src.Open(ctx, 1)
		if err != nil {
			b.Fatal(err)
		}
		got, calls, acked := 0, 0, 0
		for got < n {
			calls++
			msgs, err := r.Next(ctx, 10000, 5*time.Second)
			if err != nil || len(msgs) == 0 {
				b.Fatalf("Next after %d: %d, %v", got, len(msgs), err)
			}
			got += len(msgs)
			if got-acked >= 10000 || got == n {
				if err := r.Ack(ctx, msgs[len(msgs)-1].Seq); err != nil {
					b.Fatal(err)
				}
				acked = got
			}
		}
		_ = r.Close()
		b.ReportMetric(float64(n)/float64(calls), "msgs/batch")
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRawPublishAsync is the yardstick for BenchmarkAppend: 10,000
// async publishes of 100 bytes to a compacted stream per operation, plain
// and with Nats-Expected-Last-Sequence on every message (as Append does).
func BenchmarkRawPublishAsync(b *testing.B) {
	for _, expect := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "expect-last-seq"}[expect], func(b *testing.B) {
			_, _, js := jstest.Start(b)
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "raw", Subjects: []string{"raw.>"}, MaxMsgsPerSubject: 1}); err != nil {
				b.Fatal(err)
			}
			subjects := make([]string, 10000)
			for i := range subjects {
				subjects[i] = "raw.t." + jetstream.EncodeKey(fmt.Appendf(nil, "key-%08d", i))
			}
			val := make([]byte, 100)
			var seq uint64
			for b.Loop() {
				for _, s := range subjects {
					opts := []natsjs.PublishOpt{natsjs.WithStallWait(time.Minute)}
					if expect {
						opts = append(opts, natsjs.WithExpectLastSequence(seq))
					}
					seq++
					if _, err := js.PublishMsgAsync(&nats.Msg{Subject: s, Data: val}, opts...); err != nil {
						b.Fatal(err)
					}
				}
				<-js.PublishAsyncComplete()
			}
			b.ReportMetric(float64(b.N*len(subjects))/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRawConsumeAckAll is the yardstick for BenchmarkSourceRead: the
// same 200,000 messages read with a plain AckAll pull consumer
// (Consume, PullMaxMessages 10000), acking every 10,000th message.
func BenchmarkRawConsumeAckAll(b *testing.B) {
	_, _, js := jstest.Start(b)
	src := newSource(b, js, "in.>")
	const n = 200000
	publishN(b, js, "in.a", n, 100)
	ctx := context.Background()
	for b.Loop() {
		_ = js.DeleteConsumer(ctx, src.Stream(), "raw")
		cons, err := js.CreateConsumer(ctx, src.Stream(), natsjs.ConsumerConfig{Durable: "raw", AckPolicy: natsjs.AckAllPolicy, MaxAckPending: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		got, done := 0, make(chan struct{})
		cc, err := cons.Consume(func(m natsjs.Msg) {
			got++
			if got%10000 == 0 {
				_ = m.Ack()
			}
			if got == n {
				close(done)
			}
		}, natsjs.PullMaxMessages(10000))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		cc.Stop()
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRawOrderedReplay is the yardstick for BenchmarkReplay: the same
// partition read with a plain ordered consumer (Messages, PullMaxMessages
// 8192), parsing only the metadata.
func BenchmarkRawOrderedReplay(b *testing.B) {
	_, _, js := jstest.Start(b)
	cl := newChangelog(b, js, 1)
	ctx := context.Background()
	var last uint64
	for i := 0; i < 20; i++ {
		var err error
		if last, err = cl.Append(ctx, 0, last, records(10000, i*10000), port.CommitMarker{}); err != nil {
			b.Fatal(err)
		}
	}
	const n = 200001
	for b.Loop() {
		cons, err := js.OrderedConsumer(ctx, cl.Stream(0), natsjs.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(natsjs.PullMaxMessages(8192))
		if err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; got++ {
			m, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			_, _ = m.Metadata()
		}
		it.Stop()
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}
