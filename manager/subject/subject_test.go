package subject_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgetables/edgetables/manager/subject"
)

func TestValid(t *testing.T) {
	for _, s := range []string{"a", "a.b", "a.*", "a.>", ">", "*", "*.*.c", "sensors.d-1.temp", "ü.x"} {
		if err := subject.Valid(s); err != nil {
			t.Errorf("Valid(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "a.", ".a", "a..b", "a.>.b", ">.a", "a b", "a.\tb", "a*", "a.b>", "*a.b", "a.\x00", "a.\x7f"} {
		if err := subject.Valid(s); !errors.Is(err, subject.ErrInvalid) {
			t.Errorf("Valid(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestMatchesSubsetCollide(t *testing.T) {
	tests := []struct {
		a, b            string
		subset, collide bool // Subset(a, b), Collide(a, b)
	}{
		{"a", "a", true, true},
		{"a", "b", false, false},
		{"a.b", "a.*", true, true},
		{"a.*", "a.b", false, true},
		{"a.b.c", "a.>", true, true},
		{"a", "a.>", false, false},
		{"a.>", "a", false, false},
		{"a.>", ">", true, true},
		{">", "a.>", false, true},
		{"*.b", "a.*", false, true},
		{"a.*", "a.*.c", false, false},
		{"a.*.c", "a.>", true, true},
		{"*", ">", true, true},
		{"a.b", "a.b.c", false, false},
		{"x.*", "y.>", false, false},
		{"a.>", "a.>", true, true},
		{"a.>", "a.*", false, true},
		{"a.b.c", "a.*", false, false},
		{"a.b", ">", true, true},
		{"*.b", "a.>", false, true},
	}
	for _, tt := range tests {
		if got := subject.Subset(tt.a, tt.b); got != tt.subset {
			t.Errorf("Subset(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.subset)
		}
		if got := subject.Collide(tt.a, tt.b); got != tt.collide {
			t.Errorf("Collide(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.collide)
		}
		if got := subject.Collide(tt.b, tt.a); got != tt.collide {
			t.Errorf("Collide(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.collide)
		}
		agreeWithServer(t, tt.a, tt.b)
	}
	if !subject.Matches("sensors.*.temp", "sensors.d1.temp") || subject.Matches("sensors.*.temp", "sensors.d1.hum") {
		t.Error("Matches")
	}
}

func TestToken(t *testing.T) {
	for _, tt := range []struct {
		s    string
		i    int
		want string
	}{{"a.b.c", 1, "a"}, {"a.b.c", 2, "b"}, {"a.b.c", 3, "c"}, {"a.b.c", 4, ""}, {"a.b.c", 0, ""}, {"a", 1, "a"}} {
		if got := subject.Token(tt.s, tt.i); got != tt.want {
			t.Errorf("Token(%q, %d) = %q, want %q", tt.s, tt.i, got, tt.want)
		}
	}
}

// agreeWithServer checks this package against nats-server's own functions
// for two filters Valid accepts.
func agreeWithServer(t *testing.T, a, b string) {
	t.Helper()
	if subject.Valid(a) != nil || subject.Valid(b) != nil {
		return
	}
	if !server.IsValidSubject(a) || !server.IsValidSubject(b) {
		t.Errorf("Valid accepts %q and %q; nats-server does not", a, b)
	}
	if got, want := subject.Subset(a, b), server.SubjectMatchesFilter(a, b); got != want {
		t.Errorf("Subset(%q, %q) = %v; nats-server says %v", a, b, got, want)
	}
	if got, want := subject.Collide(a, b), server.SubjectsCollide(a, b); got != want {
		t.Errorf("Collide(%q, %q) = %v; nats-server says %v", a, b, got, want)
	}
}

// FuzzAgreesWithServer compares Subset and Collide with nats-server on
// filters built from the fuzzer's bytes over a small alphabet, so that
// wildcards and equal tokens meet often.
func FuzzAgreesWithServer(f *testing.F) {
	for _, s := range [][2]string{{"a.b", "a.*"}, {"a.>", "*.b"}, {">", "a"}, {"a.*.c", "a.b.>"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		agreeWithServer(t, filterOf(a), filterOf(b))
	})
}

// filterOf maps arbitrary text to a filter over tokens a, b, *, >.
func filterOf(s string) string {
	toks := []string{"a", "b", "*", ">"}
	var out []string
	for i := 0; i < len(s) && i < 6; i++ {
		out = append(out, toks[int(s[i])%len(toks)])
	}
	return strings.Join(out, ".")
}
