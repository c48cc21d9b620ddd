package edge

import (
	"errors"
	"strings"
	"testing"
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
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseTableSpec(s)
		if err != nil {
			return
		}
		if _, _, err := Builtin(spec); err != nil {
			t.Fatalf("parsed spec %q refused by Builtin: %v", s, err)
		}
	})
}
