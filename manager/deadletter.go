package manager

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/edgetables/edgetables/manager/port"
)

// Dead letters must not amplify bad input: a device sending a burst of
// garbage must not stall the good events behind one round trip and one
// log line per refused event. Refused events are queued (a bounded queue:
// when it is full, processing waits rather than drops) and sent by a few
// goroutines at once; each commit waits for the dead letters queued before
// it, so a committed position never passes a dead letter that was not
// stored, unless the dead-letter stream stays silent past a commit's
// timeout (then it is logged, and the queue keeps trying). Logs are
// rate-limited per agent and kind of reason, with counts.

// The kinds of reason a dead letter has, as counted in the status.
const (
	// ReasonKey: the event's key could not be computed.
	ReasonKey = "key"
	// ReasonAgent: the agent returned an error or panicked.
	ReasonAgent = "agent"
	// ReasonLimit: the event's writes could never be committed (too many
	// keys, a value or key too large).
	ReasonLimit = "limit"
)

// DeadLetterReasons lists the kinds of reason, for the status.
var DeadLetterReasons = []string{ReasonKey, ReasonAgent, ReasonLimit}

// Sizes of the dead-letter sender.
const (
	deadLetterQueue   = 1024
	deadLetterWorkers = 8
	deadLetterTimeout = 5 * time.Second
	// deadLetterLogEvery is the least time between two log lines about
	// events refused by one agent for one kind of reason.
	deadLetterLogEvery = 10 * time.Second
)

// deadLetterSender sends queued dead letters with a few workers. Its
// goroutines are owned by Run, which starts and stops them.
type deadLetterSender struct {
	m  *TableManager
	ch chan port.DeadLetter

	mu       sync.Mutex
	cond     *sync.Cond
	queued   uint64 // dead letters queued so far
	finished uint64 // of them, sent or failed
	logs     logLimiter
}

func newDeadLetterSender(m *TableManager) *deadLetterSender {
	s := &deadLetterSender{m: m, ch: make(chan port.DeadLetter, deadLetterQueue)}
	s.cond = sync.NewCond(&s.mu)
	s.logs.every = deadLetterLogEvery
	return s
}

// run sends queued dead letters until the queue is closed and empty.
func (s *deadLetterSender) run() {
	var wg sync.WaitGroup
	for range deadLetterWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dl := range s.ch {
				s.send(dl)
			}
		}()
	}
	wg.Wait()
}

// failed logs a dead letter that could not be sent.
func (s *deadLetterSender) failed(dl port.DeadLetter, err error) {
	if ok, more := s.logs.allow("send\x00" + dl.Agent); ok {
		s.m.log.Error("dead-letter publish failed: the refused event is only in the source stream (until trimmed) and in this log",
			"agent", dl.Agent, "subject", dl.Message.Subject, "source_seq", dl.Message.Seq, "err", err, "similar_failures_not_logged", more)
	}
}

func (s *deadLetterSender) send(dl port.DeadLetter) {
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterTimeout)
	err := s.m.cfg.DeadLetters.Send(ctx, dl)
	cancel()
	if err != nil {
		s.failed(dl, err)
	}
	s.mu.Lock()
	s.finished++
	s.cond.Broadcast()
	s.mu.Unlock()
}

// enqueue queues dl, waiting while the queue is full (or until ctx ends:
// then dl is sent at once, synchronously). A DeadLetterQueue takes it
// directly.
func (s *deadLetterSender) enqueue(ctx context.Context, dl port.DeadLetter) {
	if q, ok := s.m.cfg.DeadLetters.(port.DeadLetterQueue); ok {
		if err := q.Enqueue(ctx, dl); err != nil {
			s.failed(dl, err)
		}
		return
	}
	s.mu.Lock()
	s.queued++
	s.mu.Unlock()
	select {
	case s.ch <- dl:
	case <-ctx.Done():
		s.send(dl)
	}
}

// flush waits until every dead letter queued before the call was sent or
// failed, or d passed; it reports whether they all were.
func (s *deadLetterSender) flush(d time.Duration) bool {
	if q, ok := s.m.cfg.DeadLetters.(port.DeadLetterQueue); ok {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return q.Flush(ctx) == nil
	}
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.queued
	for s.finished < target {
		if !time.Now().Before(deadline) {
			return false
		}
		s.cond.Wait()
	}
	return true
}

// close stops the workers once the queue is sent.
func (s *deadLetterSender) close() { close(s.ch) }

// logLimiter lets one log line through per key and period, counting the
// ones it holds back.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*limitedKey
}

type limitedKey struct {
	last time.Time
	held int
}

// allow reports whether a line for key may be logged now, and how many
// were held back since the last one.
func (l *logLimiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil || len(l.keys) > 4096 {
		l.keys = make(map[string]*limitedKey)
	}
	k := l.keys[key]
	if k == nil {
		k = &limitedKey{}
		l.keys[key] = k
	}
	now := time.Now()
	if !k.last.IsZero() && now.Sub(k.last) < l.every {
		k.held++
		return false, 0
	}
	held := k.held
	k.last, k.held = now, 0
	return true, held
}

// reasonKind is reason without its numbers and quoted values, cut short:
// refusals of one kind share it.
func reasonKind(reason string) string {
	var b strings.Builder
	quoted := false
	for _, r := range reason {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted || unicode.IsDigit(r):
		default:
			b.WriteRune(r)
		}
		if b.Len() >= 80 {
			break
		}
	}
	return b.String()
}
