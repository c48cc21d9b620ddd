package manager

import (
	"testing"
	"time"
)

func TestReasonKind(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"key: key of 2048 bytes exceeds 1024", "key: key of 4000 bytes exceeds 1024"},
		{`decode field "n": not a number: "abc"`, `decode field "n": not a number: "xyz"`},
		{"write to table t: value of 1048376 bytes exceeds the changelog record limit of 1047552 bytes", "write to table t: value of 2000000 bytes exceeds the changelog record limit of 1047552 bytes"},
	} {
		if ka, kb := reasonKind(c.a), reasonKind(c.b); ka != kb {
			t.Errorf("reasonKind(%q) = %q, reasonKind(%q) = %q; want one kind", c.a, ka, c.b, kb)
		}
	}
	if reasonKind("key: missing field") == reasonKind("agent count panicked: boom") {
		t.Error("different reasons share a kind")
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 50 * time.Millisecond}
	if ok, held := l.allow("a"); !ok || held != 0 {
		t.Fatalf("first line: %v, %d; want logged", ok, held)
	}
	for range 99 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("a line within the period was logged")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Error("another key is held back by the first")
	}
	time.Sleep(60 * time.Millisecond)
	if ok, held := l.allow("a"); !ok || held != 99 {
		t.Errorf("after the period: %v, %d held; want logged with 99 held back", ok, held)
	}
}
