package jetstream

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

// errIdleWait is the error of an idleWait whose wait ran out; seqReader.next
// turns it into nats.ErrTimeout.
var errIdleWait = errors.New("edgetables/jetstream: no message within the wait")

// idleWait is the context a seqReader passes to its iterator's Next (with
// natsjs.NextContext): its Done channel is closed once maxWait has passed
// since the current wait began without a new one beginning. One timer
// serves all of a reader's waits: it is re-armed for the rest of the
// current wait when it fires early, and only then. (NextMaxWait set up and
// stopped a timer in every Next, that is for every message read.) A wait
// whose channel was closed is followed by one with a new channel.
//
// It is not a general context: it has no deadline, no values and no
// parent, and its timer runs until stop.
type idleWait struct {
	mu      sync.Mutex
	timer   *time.Timer // nil before the first wait
	done    chan struct{}
	began   time.Time // when the current wait began
	maxWait time.Duration
	expired bool // done is closed
	stopped bool
}

// begin starts a wait of maxWait.
func (w *idleWait) begin(maxWait time.Duration) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	changed := maxWait != w.maxWait
	w.began, w.maxWait = now, maxWait
	switch {
	case w.timer == nil:
		w.done = make(chan struct{})
		w.timer = time.AfterFunc(maxWait, w.fire)
	case w.expired:
		w.done, w.expired = make(chan struct{}), false
		w.timer.Reset(maxWait)
	case changed:
		// The timer may be armed for longer than this wait.
		w.timer.Reset(maxWait)
	}
	// Otherwise the timer is armed for the end of an earlier wait at the
	// latest, before this one's end: fire re-arms it then.
}

// fire runs when the timer expires: it closes done if the current wait is
// over, and re-arms the timer for its end otherwise.
func (w *idleWait) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.expired {
		return
	}
	if left := w.maxWait - time.Since(w.began); left > 0 {
		w.timer.Reset(left)
		return
	}
	close(w.done)
	w.expired = true
}

// stop stops the timer for good.
func (w *idleWait) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// Deadline reports no deadline (context.Context).
func (w *idleWait) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns the channel closed when the current wait is over
// (context.Context).
func (w *idleWait) Done() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// Err returns errIdleWait once the current wait is over, nil before
// (context.Context).
func (w *idleWait) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.expired {
		return errIdleWait
	}
	return nil
}

// Value returns nil (context.Context).
func (w *idleWait) Value(any) any { return nil }

// ackSeqs are the parts of a JetStream message's metadata the readers
// use: its stream sequence, its consumer sequence, the number of messages
// pending on the consumer after it, and when it was stored (nanoseconds
// since the Unix epoch).
type ackSeqs struct {
	stream, consumer, pending uint64
	stored                    int64
}

// Token positions in a JetStream message's reply subject (nats.go's
// internal/parser): v1 is $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
// <cseq>.<tm>.<pending> (9 tokens); v2 adds <domain>.<account hash> after
// $JS.ACK and may add tokens at the end (11 tokens at least).
const (
	ackV1Tokens    = 9
	ackV2MinTokens = 11
	ackStreamSeqV2 = 7 // <sseq> in v2; v1 has it 2 tokens earlier
	ackConsSeqV2   = 8
	ackPendingV2   = 10
)

// parseAckSeqs reads ackSeqs from a message's reply subject without
// building the whole metadata (natsjs.Msg.Metadata). It accepts what
// nats.go's parser (v1.55.0, v1.56.0) accepts, and is stricter about the numbers:
// one that is empty or not all decimal digits, or does not fit in a
// uint64 (an int64 for the time), is an error where nats.go reads 0.
func parseAckSeqs(reply string) (ackSeqs, error) {
	const prefix = "$JS.ACK."
	tokens := strings.Count(reply, ".") + 1
	if tokens != ackV1Tokens && tokens < ackV2MinTokens || !strings.HasPrefix(reply, prefix) {
		return ackSeqs{}, fmt.Errorf("edgetables/jetstream: not a JetStream message's reply subject: %q", reply)
	}
	i := ackStreamSeqV2 // the token at rest's start, counted as in v2
	if tokens == ackV1Tokens {
		i -= 2
	}
	rest := reply
	for ; i > 0; i-- {
		rest = rest[strings.IndexByte(rest, '.')+1:]
	}
	// rest is <sseq>.<cseq>.<tm>.<pending>[.<more>]
	var s ackSeqs
	var tm uint64
	var ok bool
	if s.stream, rest, ok = cutDecimal(rest); ok {
		if s.consumer, rest, ok = cutDecimal(rest); ok {
			if tm, rest, ok = cutDecimal(rest); ok && tm <= math.MaxInt64 {
				s.stored = int64(tm)
				s.pending, _, ok = cutDecimal(rest)
			} else {
				ok = false
			}
		}
	}
	if !ok {
		return ackSeqs{}, fmt.Errorf("edgetables/jetstream: bad sequence in reply subject %q", reply)
	}
	return s, nil
}

// cutDecimal parses the non-empty decimal number at s's start, which ends
// at s's end or at a dot, and returns it and what follows the dot; ok is
// false if it is empty, has anything but digits or overflows a uint64.
func cutDecimal(s string) (n uint64, rest string, ok bool) {
	i := 0
	for ; i < len(s) && s[i] != '.'; i++ {
		d := uint64(s[i] - '0')
		if d > 9 || n > (^uint64(0)-d)/10 {
			return 0, "", false
		}
		n = n*10 + d
	}
	if i == 0 {
		return 0, "", false
	}
	if i < len(s) {
		i++ // the dot
	}
	return n, s[i:], true
}
