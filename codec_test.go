package hearth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

type fuzzReq struct {
	Name  string         `json:"name"`
	Seat  int            `json:"seat"`
	Ready bool           `json:"ready"`
	Cards []string       `json:"cards"`
	Meta  map[string]int `json:"meta"`
	Inner *struct {
		N uint8 `json:"n"`
	} `json:"inner"`
}

// decodeFresh is decodeJSON with a new json.Decoder for each payload: what
// the pooled decoders must be indistinguishable from.
func decodeFresh(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// sameAsFresh decodes b into a new T with decodeJSON and decodeFresh and
// requires the same value and the same error.
func sameAsFresh[T any](t *testing.T, b []byte) {
	t.Helper()
	var got, want T
	gotErr, wantErr := decodeJSON(b, &got), decodeFresh(b, &want)
	if wantErr != nil {
		require.EqualError(t, gotErr, wantErr.Error(), "payload %q", b)
		return
	}
	require.NoError(t, gotErr, "payload %q", b)
	require.Equal(t, want, got, "payload %q", b)
}

// TestDecodeJSONCarriesNothingOver: the decoders are reused across
// requests, so no payload — malformed, cut short, followed by more data,
// a bare number that only the end of the input ends — may change how the
// next one decodes. Every payload, in many orders, must decode exactly as
// with a new decoder.
func TestDecodeJSONCarriesNothingOver(t *testing.T) {
	payloads := []string{
		`{"name":"a","seat":1}`, `{"seat":"1"}`, `{"x":1}`, `{} {}`, `{}x`, `{"name":"b"}  `, `  {"seat":2}`,
		`{"name":"c`, `{"cards":["a",`, `[1]`, `null`, ``, ` `, `{"inner":{"n":256}}`, `{"inner":{"n":7}}`,
		`{"meta":{"k":1},"cards":["q"]}`, `5`, `"str"`, `{"seat":1e3}`, `}`, `{"Name":"case"}`, "{\"name\":\"\xff\"}", "0\v", "{}\v",
	}
	order := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		for _, i := range order.Perm(len(payloads)) {
			b := []byte(payloads[i])
			sameAsFresh[fuzzReq](t, b)
			sameAsFresh[int](t, b)
			sameAsFresh[map[string]any](t, b)
		}
	}
}

// BenchmarkDecodeJSON decodes a move's request (a Niu Niu bet) with the
// pooled decoders and, to compare, with a new json.Decoder each time.
func BenchmarkDecodeJSON(b *testing.B) {
	payload := []byte(`{"multiplier":2}`)
	for _, bc := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"pooled", decodeJSON}, {"new-decoder", decodeFresh}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var req struct {
					Multiplier int `json:"multiplier"`
				}
				if err := bc.decode(payload, &req); err != nil || req.Multiplier != 2 {
					b.Fatal(err, req)
				}
			}
		})
	}
}

// FuzzDecodeJSON checks that the strict decoder of HandleJSON never panics,
// that it decodes as a new json.Decoder would, that it leaves the next
// payload's decoding alone, and that whatever it accepts survives a round
// trip unchanged.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"a","seat":1}`, `{"seat":"1"}`, `{"x":1}`, `{} {}`, `[1]`,
		`{"cards":["a"],"meta":{"k":1},"inner":{"n":255}}`, `{"inner":{"n":256}}`, `null`, `{"seat":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsFresh[fuzzReq](t, b)
		sameAsFresh[any](t, b)
		sameAsFresh[fuzzReq](t, []byte(`{"name":"next","seat":3}`))
		var req fuzzReq
		if err := decodeJSON(b, &req); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		out, err := json.Marshal(req)
		require.NoError(t, err)
		var again fuzzReq
		require.NoError(t, decodeJSON(out, &again))
		require.Equal(t, req, again)
	})
}
