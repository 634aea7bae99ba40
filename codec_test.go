package hearth

import (
	"encoding/json"
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

// FuzzDecodeJSON checks that the strict decoder of HandleJSON never panics,
// and that whatever it accepts survives a round trip unchanged.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"name":"a","seat":1}`, `{"seat":"1"}`, `{"x":1}`, `{} {}`, `[1]`,
		`{"cards":["a"],"meta":{"k":1},"inner":{"n":255}}`, `{"inner":{"n":256}}`, `null`, `{"seat":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
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
