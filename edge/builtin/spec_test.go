package builtin

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgetables/edgetables/manager"
	"github.com/edgetables/edgetables/manager/window"
)

func TestParseTableSpec(t *testing.T) {
	good := []struct {
		in   string
		want TableSpec
	}{
		{"name=temps,source=sensors.*.temp,key=subject:2,agg=max,field=value",
			TableSpec{Name: "temps", Source: "sensors.*.temp", Key: KeySpec{Token: 2}, Agg: "max", Field: "value"}},
		{"name=c,source=ev.>,key=json:device.id,agg=count",
			TableSpec{Name: "c", Source: "ev.>", Key: KeySpec{Field: "device.id"}, Agg: "count"}},
		{"agg=latest, name=l ,source=a.b,key=subject:1",
			TableSpec{Name: "l", Source: "a.b", Key: KeySpec{Token: 1}, Agg: "latest"}},
		{"name=s,source=a.*,key=subject:2,agg=set,field=user",
			TableSpec{Name: "s", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "set", Field: "user"}},
		{"name=w,source=a.*,key=subject:2,agg=count,window=1m",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "count", Window: time.Minute}},
		{"name=w,source=a.*,key=subject:2,agg=avg,field=v,window=10m,hop=1m,expires=1h,time=json:at.ts",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "avg", Field: "v", Window: 10 * time.Minute,
				Hop: time.Minute, Expires: time.Hour, Time: window.TimeSource{Kind: window.TimeField, Name: "at.ts"}}},
		{"name=w,source=a.*,key=subject:2,agg=set,field=v,window=30s,time=now",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "set", Field: "v", Window: 30 * time.Second,
				Time: window.TimeSource{Kind: window.TimeNow}}},
		{"name=w,source=a.*,key=subject:2,agg=count,window=1h,time=header:Ts,expires=5m",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "count", Window: time.Hour, Expires: 5 * time.Minute,
				Time: window.TimeSource{Kind: window.TimeHeader, Name: "Ts"}}},
		{"name=w,source=a.*,key=subject:2,agg=count,window=1m,tombstone-ttl=24h",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "count", Window: time.Minute, TombstoneTTL: 24 * time.Hour}},
		{"name=w,source=a.*,key=subject:2,agg=count,window=1m,tombstone-ttl=forever",
			TableSpec{Name: "w", Source: "a.*", Key: KeySpec{Token: 2}, Agg: "count", Window: time.Minute, TombstoneTTL: -1}},
	}
	for _, c := range good {
		got, err := ParseTableSpec(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		got.raw = ""
		if got != c.want {
			t.Errorf("%q = %+v, want %+v", c.in, got, c.want)
		}
	}
	bad := []struct{ in, mention string }{
		{"name=a,source=x.y,key=subject:1", "agg is missing"},
		{"name=a,source=x.y,key=subject:1,agg=median", `agg "median"`},
		{"name=a,source=x.y,key=subject:1,agg=sum", "needs field"},
		{"name=a,source=x.y,key=subject:1,agg=count,field=v", "takes no field"},
		{"name=a,source=x.y,key=subject:0,agg=count", "token number"},
		{"name=a,source=x.y,key=subject:3,agg=count", "only 2 tokens"},
		{"name=a,source=x.y,key=header:k,agg=count", "subject:N or json:FIELD"},
		{"name=a,source=x..y,key=subject:1,agg=count", "not a valid NATS subject"},
		{"name=a,source=x.y,key=json:a..b,agg=count", "empty segment"},
		{"name=a,name=b,source=x.y,key=subject:1,agg=count", "given twice"},
		{"name=a,source=x.y,key=subject:1,agg=count,color=red", `unknown part "color"`},
		{"name=a,source", "not key=value"},
		{"name=a,source=x.y,key=subject:1,agg=set", "set needs field"},
		{"name=a,source=x.y,key=subject:1,agg=count,window=soon", `window "soon": want a positive duration`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=2562047h", `window "2562047h": want a positive duration such as 30s, 5m or 1h, at most 87600h0m0s`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1h,expires=100000h", `expires "100000h"`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=-1m", "positive duration"},
		{"name=a,source=x.y,key=subject:1,agg=count,hop=1m", "hop needs window"},
		{"name=a,source=x.y,key=subject:1,agg=count,expires=1m", "expires needs window"},
		{"name=a,source=x.y,key=subject:1,agg=count,time=now", "time needs window"},
		{"name=a,source=x.y,key=subject:1,agg=count,tombstone-ttl=1h", "tombstone-ttl needs window"},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1m,tombstone-ttl=500ms", `tombstone-ttl "500ms": want forever or a duration of at least 1s`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1m,tombstone-ttl=never", `tombstone-ttl "never"`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1m,hop=2m", "step 2m0s"},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1h,hop=1s", "overlapping windows"},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1m,time=wall", `time "wall"`},
		{"name=a,source=x.y,key=subject:1,agg=count,window=1m,time=json:a..b", "empty segment"},
	}
	for _, c := range bad {
		_, err := ParseTableSpec(c.in)
		if err == nil {
			t.Errorf("%q accepted", c.in)
			continue
		}
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%q: error %q does not mention %q", c.in, err, c.mention)
		}
	}
}

func FuzzParseTableSpec(f *testing.F) {
	f.Add("name=temps,source=sensors.*.temp,key=subject:2,agg=max,field=value")
	f.Add("name=c,source=ev.>,key=json:a.b,agg=count")
	f.Add("name=w,source=a.*,key=subject:2,agg=set,field=v,window=10m,hop=1m,expires=1h,time=json:ts")
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseTableSpec(s)
		if err != nil {
			return
		}
		if _, _, err := Builtin(spec); err != nil {
			t.Fatalf("parsed spec %q refused by Builtin: %v", s, err)
		}
		// The spec written from its fields parses to the same fields.
		canon := spec
		canon.raw = ""
		again, err := ParseTableSpec(canon.String())
		if err != nil {
			t.Fatalf("%q: its canonical form %q does not parse: %v", s, canon.String(), err)
		}
		again.raw = ""
		if !reflect.DeepEqual(again, canon) {
			t.Fatalf("%q: %+v -> %q -> %+v", s, canon, canon.String(), again)
		}
	})
}

// TestBuiltinClockSkew: the node's --max-clock-skew reaches the windowed
// tables built from specs.
func TestBuiltinClockSkew(t *testing.T) {
	for _, c := range []struct {
		skew, want time.Duration
	}{{0, manager.DefaultMaxClockSkew}, {5 * time.Minute, 5 * time.Minute}, {-1, -1}} {
		s, err := ParseTableSpec("name=w,source=a.*,key=subject:2,agg=count,window=1m")
		if err != nil {
			t.Fatal(err)
		}
		s.MaxClockSkew = c.skew
		table, _, err := Builtin(s)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := table.(interface{ MaxClockSkew() time.Duration })
		if !ok {
			t.Fatalf("%T has no MaxClockSkew", table)
		}
		if got := w.MaxClockSkew(); got != c.want {
			t.Errorf("skew %s: table has %s, want %s", c.skew, got, c.want)
		}
	}
}
