package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Session tokens are HS256 JWTs: sub = user id, with issue and expiry
// times. Any auth instance holding the cluster's secret verifies them, so
// auth.token works on every node with no lookup.
type tokens struct {
	secret []byte
	ttl    time.Duration
}

const tokenIssuer = "hearth"

func (t *tokens) issue(user string, now time.Time) (string, time.Time, error) {
	exp := now.Add(t.ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer:    tokenIssuer,
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	})
	s, err := tok.SignedString(t.secret)
	return s, exp, err
}

var errTokenInvalid = errors.New("auth: token invalid")

// verify returns the user id of a valid, unexpired token.
func (t *tokens) verify(s string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(s, &claims, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return "", fmt.Errorf("%w: expired", errTokenInvalid)
		}
		return "", fmt.Errorf("%w: %v", errTokenInvalid, err)
	}
	if claims.Subject == "" {
		return "", fmt.Errorf("%w: no subject", errTokenInvalid)
	}
	return claims.Subject, nil
}
