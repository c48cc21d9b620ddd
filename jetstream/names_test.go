package jetstream

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestKeyToken(t *testing.T) {
	tests := []struct {
		key   []byte
		token string
	}{
		{nil, "="},
		{[]byte{}, "="},
		{[]byte("a"), "YQ"},
		{[]byte("ab"), "YWI"},
		{[]byte("abc"), "YWJj"},
		{[]byte{0xfb, 0xff}, "-_8"},
		{[]byte("a.b*c>d e"), "YS5iKmM-ZCBl"},
	}
	for _, tt := range tests {
		if got := EncodeKey(tt.key); got != tt.token {
			t.Errorf("EncodeKey(%q) = %q, want %q", tt.key, got, tt.token)
		}
		got, err := DecodeKey(tt.token)
		if err != nil || !bytes.Equal(got, tt.key) || got == nil {
			t.Errorf("DecodeKey(%q) = %q, %v; want %q", tt.token, got, err, tt.key)
		}
	}
	for _, bad := range []string{"", "==", "YQ=", "YQ==", "Y", "YR", "a+b", "a/b", "Y\nQ", "YQ\r", "a.b", "*"} {
		if k, err := DecodeKey(bad); !errors.Is(err, ErrBadKeyToken) {
			t.Errorf("DecodeKey(%q) = %q, %v; want ErrBadKeyToken", bad, k, err)
		}
	}
}

func validToken(tok string) bool {
	return tok != "" && !strings.ContainsAny(tok, ".*> \t\r\n")
}

func FuzzKeyToken(f *testing.F) {
	for _, s := range []string{"", "a", "ab", "abc", "\x00\xff", "k.1", "日本"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		tok := EncodeKey(key)
		if !validToken(tok) {
			t.Fatalf("EncodeKey(%q) = %q: not a subject token", key, tok)
		}
		got, err := DecodeKey(tok)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("DecodeKey(EncodeKey(%q)) = %q, %v", key, got, err)
		}
		// Any string that decodes must be the canonical token of its key.
		if k, err := DecodeKey(string(key)); err == nil && EncodeKey(k) != string(key) {
			t.Fatalf("DecodeKey(%q) = %q, whose token is %q", key, k, EncodeKey(k))
		}
	})
}

func TestValidateNames(t *testing.T) {
	for _, app := range []string{"a", "my_app-1", strings.Repeat("x", MaxAppLen)} {
		if err := ValidateApp(app); err != nil {
			t.Errorf("ValidateApp(%q) = %v", app, err)
		}
	}
	for _, app := range []string{"", "a.b", "a b", "a*", "é", strings.Repeat("x", MaxAppLen+1)} {
		if err := ValidateApp(app); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateApp(%q) = %v, want ErrBadName", app, err)
		}
	}
	for _, tbl := range []string{"t", "word-counts", "日本", "a:b"} {
		if err := ValidateToken("table", tbl); err != nil {
			t.Errorf("ValidateToken(%q) = %v", tbl, err)
		}
	}
	for _, tbl := range []string{"", "a.b", "a*", ">", "a b", "a\x00", "\xff"} {
		if err := ValidateToken("table", tbl); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateToken(%q) = %v, want ErrBadName", tbl, err)
		}
	}
}

func TestNames(t *testing.T) {
	if got := RecordSubject("app", 3, "tbl", []byte("k")); got != "app.changelog.3.tbl.aw" {
		t.Errorf("RecordSubject = %q", got)
	}
	if got := ChangelogSubjects("app", 3); !slices.Equal(got, []string{"app.changelog.3.>", "app.commit.3"}) {
		t.Errorf("ChangelogSubjects = %q", got)
	}
	if got := ChangelogStream("app", 3); got != "app_changelog_3" {
		t.Errorf("ChangelogStream = %q", got)
	}
	if got := DeadLetterSubject("app", "ag"); got != "app.dlq.ag" {
		t.Errorf("DeadLetterSubject = %q", got)
	}
	for in, want := range map[string]string{"node-1": "node-1", "n.1 x": "n_1_x", "": "edgetables", strings.Repeat("a", 70): strings.Repeat("a", 64)} {
		if got := ConsumerName(in); got != want {
			t.Errorf("ConsumerName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeSubjects(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr error
	}{
		{in: []string{"a.b"}, want: []string{"a.b"}},
		{in: []string{"a.b", "a.b"}, want: []string{"a.b"}},
		{in: []string{"a.*.b", "a.>", "c.d", "a.>"}, want: []string{"a.>", "c.d"}},
		{in: []string{"a.b.c", "a.*.c", "x"}, want: []string{"a.*.c", "x"}},
		{in: []string{"a.*", "a.b", "a.b.c"}, want: []string{"a.*", "a.b.c"}},
		{in: []string{">", "a.b"}, want: []string{">"}},
		{in: []string{"a.*.c", "a.b.*"}, wantErr: ErrSubjectOverlap},
		{in: []string{"a.>", "*.b"}, wantErr: ErrSubjectOverlap},
		{in: nil, wantErr: ErrBadName},
		{in: []string{"a..b"}, wantErr: ErrBadName},
		{in: []string{"a.>.b"}, wantErr: ErrBadName},
		{in: []string{"a b"}, wantErr: ErrBadName},
	}
	for _, tt := range tests {
		got, err := normalizeSubjects(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("normalizeSubjects(%q) = %q, %v; want %v", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("normalizeSubjects(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
