package hearth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/bench"
	"github.com/hearth-server/hearth/internal/hugepage"
)

// Under the "madvise" huge page mode a node with Config.HugePages moves
// dense memory of its process onto huge pages; /metrics says how much is
// there.
func TestNodeHugePages(t *testing.T) {
	mode := hugepage.Mode()
	node := hearthtest.Start(t, hearth.Config{HugePages: true})
	const n = 8 // huge pages' worth
	b, unmap, err := hugepage.MapSmall(n)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, unmap()) })
	if mode == "madvise" {
		hearthtest.Eventually(t, 20*time.Second, func() error {
			_, huge, err := hugepage.Region(b)
			if err == nil && huge != n*hugepage.Size {
				err = fmt.Errorf("the node moved %d of the mapping's %d bytes onto huge pages", huge, n*hugepage.Size)
			}
			return err
		})
	}
	m, err := bench.ScrapeMetrics(t.Context(), node.AdminURL())
	require.NoError(t, err)
	got, ok := m["hearth_huge_page_bytes"]
	require.True(t, ok, "/metrics has hearth_huge_page_bytes")
	if mode == "madvise" {
		require.GreaterOrEqual(t, got, float64(n*hugepage.Size), "the mapping's huge pages are among the process's")
	}
}
