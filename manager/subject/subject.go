// Package subject is edgetables' one implementation of NATS subject rules:
// which filters are valid, which subjects a filter matches, and how two
// filters relate. Its results agree with nats-server's own functions
// (SubjectMatchesFilter, SubjectsCollide; checked by this package's tests
// and fuzz target) on every filter Valid accepts.
//
// A subject is tokens separated by '.'. In a filter, a token '*' matches
// any one token and a last token '>' matches one or more.
package subject

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by Valid's errors.
var ErrInvalid = errors.New("invalid subject")

// Valid returns an error wrapping ErrInvalid unless filter is a subject or
// subject filter: non-empty tokens without white space or control
// characters, '>' only as the last token, and '*' and '>' only as whole
// tokens. (NATS takes "a*" as a literal token; edgetables refuses it, as it
// is almost always a mistaken filter.)
func Valid(filter string) error {
	if filter == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	rest := filter
	for {
		tok, after, more := strings.Cut(rest, ".")
		switch {
		case tok == "":
			return fmt.Errorf("%w: %q: empty token", ErrInvalid, filter)
		case tok == ">" && more:
			return fmt.Errorf("%w: %q: '>' must be the last token", ErrInvalid, filter)
		case strings.ContainsFunc(tok, isSpaceOrControl):
			return fmt.Errorf("%w: %q: white space or a control character", ErrInvalid, filter)
		case len(tok) > 1 && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w: %q: wildcard inside a token", ErrInvalid, filter)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// Matches reports whether subject matches filter. subject may itself hold
// wildcards: then Matches reports whether every subject it matches also
// matches filter (Subset).
func Matches(filter, subject string) bool { return Subset(subject, filter) }

// Subset reports whether every subject that s matches is matched by t.
func Subset(s, t string) bool {
	for {
		tt, trest, tmore := strings.Cut(t, ".")
		st, srest, smore := strings.Cut(s, ".")
		switch {
		case st == "":
			return false
		case tt == ">":
			return true
		case st == ">":
			return false
		case tt == "*":
		case st == "*" || st != tt:
			return false
		}
		if !tmore || !smore {
			return tmore == smore
		}
		s, t = srest, trest
	}
}

// Collide reports whether some subject matches both a and b.
func Collide(a, b string) bool {
	for {
		at, arest, amore := strings.Cut(a, ".")
		bt, brest, bmore := strings.Cut(b, ".")
		switch {
		case at == ">" || bt == ">":
			return true
		case at != "*" && bt != "*" && at != bt:
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}

// Token returns the i-th token of subject (1-based), or "" if it has
// fewer.
func Token(subject string, i int) string {
	if i < 1 {
		return ""
	}
	for ; i > 1; i-- {
		_, rest, ok := strings.Cut(subject, ".")
		if !ok {
			return ""
		}
		subject = rest
	}
	tok, _, _ := strings.Cut(subject, ".")
	return tok
}
