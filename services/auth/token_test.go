package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Whatever a client sends as a session token, verify never panics, and
// accepts only a token signed with the secret that names a user and a
// chain.
func FuzzTokenVerify(f *testing.F) {
	tk := &tokens{secret: []byte("fuzz-secret"), ttl: time.Hour}
	good, _, err := tk.issue("42", "session-1", "chain-1", time.Now())
	require.NoError(f, err)
	other := &tokens{secret: []byte("another secret"), ttl: time.Hour}
	forged, _, err := other.issue("42", "session-1", "chain-1", time.Now())
	require.NoError(f, err)
	noChain, _, err := tk.issue("42", "session-1", "", time.Now())
	require.NoError(f, err)
	for _, s := range []string{good, forged, noChain, "", "a.b.c", "not a jwt", good + "x", strings.Repeat(".", 1000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		user, chain, err := tk.verify(s)
		if err != nil {
			require.ErrorIs(t, err, errTokenInvalid)
			return
		}
		require.NotEmpty(t, user)
		require.NotEmpty(t, chain)
		_, _, err = other.verify(s)
		require.Error(t, err, "a token valid under one secret verified under another")
	})
}

func TestTokenVerify(t *testing.T) {
	tk := &tokens{secret: []byte("secret"), ttl: time.Hour}
	now := time.Now()
	s, exp, err := tk.issue("7", "sess", "chain", now)
	require.NoError(t, err)
	require.WithinDuration(t, now.Add(time.Hour), exp, time.Second)
	user, chain, err := tk.verify(s)
	require.NoError(t, err)
	require.Equal(t, "7", user)
	require.Equal(t, "chain", chain)

	noChain, _, err := tk.issue("7", "sess", "", now)
	require.NoError(t, err)
	_, _, err = tk.verify(noChain)
	require.ErrorIs(t, err, errTokenInvalid, "a token without a chain cannot be revoked: refused")
}
