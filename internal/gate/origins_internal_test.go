package gate

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// originCounts keeps each origin's last count, forgets the one set longest
// ago past maxOrigins, and goes through the hand-over's map unchanged.
func TestOriginCounts(t *testing.T) {
	var o originCounts
	require.Zero(t, o.last("a"), "an origin never seen")
	o.set("a", 3)
	o.set("b", 1)
	o.set("a", 4)
	require.Equal(t, uint64(4), o.last("a"))
	require.Equal(t, uint64(1), o.last("b"))
	require.Len(t, o.list, 2, "a set of a known origin adds none")

	// Fill to the bound; "b" is then the one set longest ago ("a" was set
	// after it), so the next new origin replaces it.
	for i := len(o.list); i < maxOrigins; i++ {
		o.set("n"+strconv.Itoa(i), uint64(i))
	}
	o.set("a", 5)
	o.set("new", 7)
	require.Len(t, o.list, maxOrigins)
	require.Zero(t, o.last("b"), "the origin set longest ago stays")
	require.Equal(t, uint64(5), o.last("a"))
	require.Equal(t, uint64(7), o.last("new"))
	require.Equal(t, uint64(2), o.last("n2"))

	m := o.toMap()
	require.Len(t, m, maxOrigins)
	back := originsFrom(m)
	for origin, n := range m {
		require.Equal(t, n, back.last(origin), "origin %s after the hand-over", origin)
	}
	require.Nil(t, (&originCounts{}).toMap(), "no origins: nothing in the hand-over")
}
