package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseHugePages(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]":   "never",
		"always madvise never":     "",
		"[]":                       "",
		"":                         "",
	} {
		require.Equal(t, want, parseHugePages(in), "%q", in)
	}
}

func TestHugePagesHint(t *testing.T) {
	for _, c := range []struct {
		mode string
		says bool
	}{{"always", false}, {"", false}, {"madvise", true}, {"never", true}} {
		var b bytes.Buffer
		hugePagesHint(&b, c.mode)
		if !c.says {
			require.Empty(t, b.String(), c.mode)
			continue
		}
		require.Contains(t, b.String(), `transparent huge pages are "`+c.mode+`"`)
		require.Contains(t, b.String(), "echo always > /sys/kernel/mm/transparent_hugepage/enabled", "it says what to do")
	}
}
