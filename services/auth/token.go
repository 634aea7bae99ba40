package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hearth-server/hearth"
)

// Session tokens are HS256 JWTs: sub = user id, jti = the session the
// token was issued to, chn = its chain, with issue and expiry times. Any
// auth instance holding the cluster's secret verifies them.
//
// A chain is the lineage of one login: a password, guest or provider login
// in session S starts chain S; auth.token in a new session continues the
// presented token's chain. auth.logout revokes the chain of its session, so
// every token descended from that login dies with it, on every node.
type tokens struct {
	secret []byte
	ttl    time.Duration
}

type claims struct {
	jwt.RegisteredClaims
	Chain string `json:"chn"`
}

const tokenIssuer = "hearth"

func (t *tokens) issue(user, session, chain string, now time.Time) (string, time.Time, error) {
	exp := now.Add(t.ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   user,
			ID:        session,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Chain: chain,
	})
	s, err := tok.SignedString(t.secret)
	return s, exp, err
}

var errTokenInvalid = errors.New("auth: token invalid")

// verify returns the user id and chain of a valid, unexpired token.
func (t *tokens) verify(s string) (user, chain string, err error) {
	var c claims
	_, err = jwt.ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return t.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return "", "", fmt.Errorf("%w: expired", errTokenInvalid)
		}
		return "", "", fmt.Errorf("%w: %v", errTokenInvalid, err)
	}
	if c.Subject == "" || c.Chain == "" {
		return "", "", fmt.Errorf("%w: no subject or chain", errTokenInvalid)
	}
	return c.Subject, c.Chain, nil
}

// revocations is the cluster's list of logged-out chains, in a KV bucket
// whose TTL is the token lifetime: an entry outlives every token of its
// chain (nats-server 2.9 has no per-key TTL, so none is cut to the
// chain's remaining lifetime). It also maps a session that logged in by
// token to the chain it continued, for its logout to find.
type revocations struct {
	kv hearth.KV
}

func revokedKey(chain string) string {
	return "r." + base64.RawURLEncoding.EncodeToString([]byte(chain))
}
func chainKey(session string) string {
	return "c." + base64.RawURLEncoding.EncodeToString([]byte(session))
}

// revoked reports whether chain was logged out.
func (r revocations) revoked(ctx context.Context, chain string) (bool, error) {
	_, err := r.kv.Get(ctx, revokedKey(chain))
	if errors.Is(err, hearth.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// continued records that session continues chain (a login by token).
func (r revocations) continued(ctx context.Context, session, chain string) error {
	_, err := r.kv.Put(ctx, chainKey(session), []byte(chain))
	return err
}

// logout revokes every chain session's tokens belong to: its own, and the
// one it continued when it logged in by token.
func (r revocations) logout(ctx context.Context, session string, now time.Time) ([]string, error) {
	chains := []string{session}
	e, err := r.kv.Get(ctx, chainKey(session))
	switch {
	case err == nil:
		chains = append(chains, string(e.Value))
	case !errors.Is(err, hearth.ErrKeyNotFound):
		return nil, err
	}
	at := []byte(now.UTC().Format(time.RFC3339))
	for _, c := range chains {
		if _, err := r.kv.Put(ctx, revokedKey(c), at); err != nil {
			return nil, err
		}
	}
	_ = r.kv.Delete(ctx, chainKey(session), 0)
	return chains, nil
}
