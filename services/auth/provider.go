package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

// Provider verifies identity tokens issued by a third party (a platform
// login, an identity service). auth.provider finds the provider by name,
// and maps the subject it returns to a stable account.
type Provider interface {
	// Name is what clients send as "provider".
	Name() string
	// Verify checks token and returns the user's stable id at the provider.
	Verify(ctx context.Context, token string) (subject string, err error)
}

// JWTProviderConfig configures a JWTProvider. Exactly one key source is
// needed: HMACSecret, PublicKeyPEM (RSA or ECDSA), or JWKSFile.
type JWTProviderConfig struct {
	Name string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// HMACSecret verifies HS256/HS384/HS512 tokens.
	HMACSecret []byte
	// PublicKeyPEM verifies RS256/RS384/RS512/ES256/ES384/ES512 tokens.
	PublicKeyPEM []byte
	// JWKSFile is a JSON Web Key Set on disk; keys are chosen by the
	// token's kid (RSA and EC keys).
	JWKSFile string
}

// JWTProvider verifies JWTs signed by a configured key, as platform logins
// issue them.
type JWTProvider struct {
	cfg     JWTProviderConfig
	methods []string
	keyFunc jwt.Keyfunc
}

var _ Provider = (*JWTProvider)(nil)

// NewJWTProvider loads the provider's keys.
func NewJWTProvider(cfg JWTProviderConfig) (*JWTProvider, error) {
	if cfg.Name == "" {
		return nil, errors.New("auth: provider needs a name")
	}
	p := &JWTProvider{cfg: cfg}
	switch {
	case len(cfg.HMACSecret) > 0:
		p.methods = []string{"HS256", "HS384", "HS512"}
		p.keyFunc = func(*jwt.Token) (any, error) { return cfg.HMACSecret, nil }
	case len(cfg.PublicKeyPEM) > 0:
		key, methods, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: provider %s: %w", cfg.Name, err)
		}
		p.methods = methods
		p.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	case cfg.JWKSFile != "":
		keys, err := loadJWKS(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: provider %s: %w", cfg.Name, err)
		}
		p.methods = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
		p.keyFunc = func(t *jwt.Token) (any, error) {
			kid, _ := t.Header["kid"].(string)
			k, ok := keys[kid]
			if !ok {
				return nil, fmt.Errorf("unknown key id %q", kid)
			}
			return k, nil
		}
	default:
		return nil, fmt.Errorf("auth: provider %s needs HMACSecret, PublicKeyPEM or JWKSFile", cfg.Name)
	}
	return p, nil
}

func (p *JWTProvider) Name() string { return p.cfg.Name }

func (p *JWTProvider) Verify(_ context.Context, token string) (string, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods(p.methods), jwt.WithExpirationRequired()}
	if p.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(p.cfg.Issuer))
	}
	if p.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(p.cfg.Audience))
	}
	var claims jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(token, &claims, p.keyFunc, opts...); err != nil {
		return "", fmt.Errorf("%w: %v", errTokenInvalid, err)
	}
	if claims.Subject == "" {
		return "", fmt.Errorf("%w: no subject", errTokenInvalid)
	}
	return claims.Subject, nil
}

func parsePublicKey(pemBytes []byte) (any, []string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes); err == nil {
		return k, []string{"RS256", "RS384", "RS512"}, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pemBytes); err == nil {
		return k, []string{"ES256", "ES384", "ES512"}, nil
	}
	return nil, nil, errors.New("public key is neither RSA nor ECDSA PEM")
}

type jwk struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func loadJWKS(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", path, err)
	}
	keys := map[string]any{}
	for _, k := range set.Keys {
		key, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS %s: key %q: %w", path, k.Kid, err)
		}
		keys[k.Kid] = key
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s has no keys", path)
	}
	return keys, nil
}

func (k jwk) publicKey() (any, error) {
	num := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, errors.New("bad base64url number")
		}
		return new(big.Int).SetBytes(b), nil
	}
	switch k.Kty {
	case "RSA":
		n, err := num(k.N)
		if err != nil {
			return nil, err
		}
		e, err := num(k.E)
		if err != nil || !e.IsInt64() {
			return nil, errors.New("bad exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := num(k.X)
		if err != nil {
			return nil, err
		}
		y, err := num(k.Y)
		if err != nil {
			return nil, err
		}
		// The uncompressed point 0x04 || X || Y, each coordinate padded to
		// the curve's size; parsing it also checks the point is on the curve.
		size := (curve.Params().BitSize + 7) / 8
		if len(x.Bytes()) > size || len(y.Bytes()) > size {
			return nil, errors.New("coordinate larger than the curve")
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		x.FillBytes(point[1 : 1+size])
		y.FillBytes(point[1+size:])
		key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("bad EC key: %w", err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("unsupported key type %q", k.Kty)
}
