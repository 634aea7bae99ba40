package cluster

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// A gate's control subject is built once: a push allocates none, and the
// cache stays bounded however many gates come and go.
func TestGateControlCached(t *testing.T) {
	b := &Bus{subj: Subjects{Prefix: "p"}}
	require.Equal(t, "p.gate.g1.c", b.gateControl("g1"))
	var got string
	allocs := testing.AllocsPerRun(100, func() { got = b.gateControl("g1") })
	require.Equal(t, "p.gate.g1.c", got)
	require.Zero(t, allocs, "allocations per lookup")
	for i := range 3 * maxControlSubjects {
		g := "gate-" + strconv.Itoa(i)
		require.Equal(t, "p.gate."+g+".c", b.gateControl(g))
	}
	require.LessOrEqual(t, len(*b.ctl.Load()), maxControlSubjects)
}

// Lookups and the cache's copies on write race safely, and every caller
// gets its gate's subject.
func TestGateControlConcurrent(t *testing.T) {
	b := &Bus{subj: Subjects{Prefix: "p"}}
	errs := make(chan string, 8)
	for w := range 8 {
		go func() {
			bad := ""
			for i := range 2000 {
				g := "g" + strconv.Itoa((i*7+w)%(maxControlSubjects+50))
				if got := b.gateControl(g); got != "p.gate."+g+".c" && bad == "" {
					bad = g + " got " + got
				}
			}
			errs <- bad
		}()
	}
	for range 8 {
		require.Empty(t, <-errs)
	}
}
