package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

// An EC key from a JWKS is the provider's key; a point off the curve or a
// coordinate longer than the curve is refused.
func TestJWKECKey(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct {
		crv   string
		curve elliptic.Curve
	}{{"P-256", elliptic.P256()}, {"P-384", elliptic.P384()}, {"P-521", elliptic.P521()}} {
		t.Run(tc.crv, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(tc.curve, rand.Reader)
			require.NoError(t, err)
			point, err := priv.PublicKey.Bytes()
			require.NoError(t, err)
			size := (len(point) - 1) / 2
			x, y := point[1:1+size], point[1+size:]

			key, err := jwk{Kty: "EC", Crv: tc.crv, X: b64(x), Y: b64(y)}.publicKey()
			require.NoError(t, err)
			require.True(t, priv.PublicKey.Equal(key), "the parsed key differs")

			bent := append([]byte(nil), y...)
			bent[len(bent)-1] ^= 1
			_, err = jwk{Kty: "EC", Crv: tc.crv, X: b64(x), Y: b64(bent)}.publicKey()
			require.ErrorContains(t, err, "bad EC key")

			_, err = jwk{Kty: "EC", Crv: tc.crv, X: b64(append([]byte{1}, x...)), Y: b64(y)}.publicKey()
			require.ErrorContains(t, err, "larger than the curve")
		})
	}
}
