package bots

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The own server's processes run with stack shrinking off, keeping any
// other GODEBUG setting of the bots', and a choice made there wins.
func TestServerEnv(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    []string
	}{
		{"", []string{"GODEBUG=gcshrinkstackoff=1"}},
		{"gctrace=1", []string{"GODEBUG=gctrace=1,gcshrinkstackoff=1"}},
		{"gctrace=1,gcshrinkstackoff=0", nil},
	} {
		t.Setenv("GODEBUG", tc.godebug)
		require.Equal(t, tc.want, serverEnv(), "GODEBUG=%q", tc.godebug)
	}
}
