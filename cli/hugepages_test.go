package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHugePagesHint(t *testing.T) {
	for _, c := range []struct {
		mode string
		on   bool   // --huge-pages
		says string // "": nothing
	}{
		{"always", false, ""},
		{"always", true, ""},
		{"", false, ""},
		{"madvise", true, ""},
		{"madvise", false, "or --huge-pages"},
		{"never", false, "echo always > /sys/kernel/mm/transparent_hugepage/enabled"},
		{"never", true, "echo always > /sys/kernel/mm/transparent_hugepage/enabled"},
	} {
		var b bytes.Buffer
		hugePagesHint(&b, c.mode, c.on)
		if c.says == "" {
			require.Empty(t, b.String(), "%+v", c)
			continue
		}
		require.Contains(t, b.String(), `transparent huge pages are "`+c.mode+`"`, "%+v", c)
		require.Contains(t, b.String(), "heap is on 4 KiB pages", "%+v", c)
		require.Contains(t, b.String(), c.says, "it says what to do: %+v", c)
		if c.mode == "never" {
			require.NotContains(t, b.String(), "--huge-pages", "under never the node does not ask")
		}
	}
}
