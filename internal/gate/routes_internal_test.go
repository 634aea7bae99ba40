package gate

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRefreshRoutesKeepsAnUnchangedTable: a node refreshes the dictionary
// on every registry update of a peer, twice a second; sessions hold the
// table they were given, so a new but equal table each time would leave
// thousands of copies alive. Only a change of the route set makes a new one.
func TestRefreshRoutesKeepsAnUnchangedTable(t *testing.T) {
	names := []string{"b.two", "a.one"}
	g := &Gate{cfg: Config{Routes: func() []string { return names }}}
	g.RefreshRoutes()
	first := g.routes.Load()
	require.Equal(t, []string{"", "a.one", "b.two"}, first.byID)

	names = []string{"a.one", "b.two", "a.one"} // same set, other order, a duplicate
	g.RefreshRoutes()
	require.Same(t, first, g.routes.Load(), "an equal route set made a new table")

	names = []string{"a.one", "b.two", "c.three"}
	g.RefreshRoutes()
	second := g.routes.Load()
	require.NotSame(t, first, second, "a new route was not taken")
	require.Equal(t, uint16(3), second.byName["c.three"])
	require.Equal(t, []string{"", "a.one", "b.two"}, first.byID, "a session's table changed under it")

	names = []string{"a.one"}
	g.RefreshRoutes()
	require.Equal(t, []string{"", "a.one"}, g.routes.Load().byID, "a removed route stayed")
}

// TestRefreshRoutesConcurrent: the registry calls RefreshRoutes from two
// goroutines (its watch, and its expiry of silent peers). Whatever order
// they run in, the dictionary left is the newest route set, never one a
// slower caller read before it changed.
func TestRefreshRoutesConcurrent(t *testing.T) {
	var current atomic.Pointer[[]string]
	g := &Gate{cfg: Config{Routes: func() []string {
		names := *current.Load()
		runtime.Gosched() // widen the window between reading and storing
		return names
	}}}
	first := []string{"a.one"}
	current.Store(&first)
	g.RefreshRoutes()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				names := []string{"a.one", fmt.Sprintf("r.n%d_%d", i, j)}
				current.Store(&names)
				g.RefreshRoutes()
			}
		})
	}
	wg.Wait()
	want := newRouteTable(*current.Load()).byID
	require.Equal(t, want, g.routes.Load().byID, "the dictionary is not the newest route set")
}
