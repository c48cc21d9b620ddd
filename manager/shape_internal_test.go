package manager

import (
	"testing"

	"github.com/edgetables/edgetables/manager/codec"
)

// ownCodec is a codec defined outside package codec.
type ownCodec struct{ codec.String }

// shapePoint is a value type of this package.
type shapePoint struct{ X int }

// TestCodecNamesAsRecorded: the codecs of package codec are named as apps
// recorded them while they were types of package manager; any other codec
// by its Go type.
func TestCodecNamesAsRecorded(t *testing.T) {
	for _, c := range []struct {
		codec any
		want  string
	}{
		{codec.String{}, "manager.StringCodec"},
		{codec.Int64{}, "manager.Int64Codec"},
		{codec.Float64{}, "manager.Float64Codec"},
		{codec.RawJSON{}, "manager.RawJSONCodec"},
		{codec.JSON[float64]{}, "manager.JSONCodec[float64]"},
		{codec.JSON[map[string][]int64]{}, "manager.JSONCodec[map[string][]int64]"},
		{codec.JSON[shapePoint]{}, "manager.JSONCodec[github.com/edgetables/edgetables/manager.shapePoint]"},
		{ownCodec{}, "manager.ownCodec"},
		{nil, ""},
	} {
		if got := codecName(c.codec); got != c.want {
			t.Errorf("codecName(%T) = %q, want %q", c.codec, got, c.want)
		}
	}
}
