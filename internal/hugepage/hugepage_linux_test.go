package hugepage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// smallPages is MapSmall with the first touch small pages of each huge
// page's worth left resident.
func smallPages(t *testing.T, n, touch int) []byte {
	t.Helper()
	b, unmap, err := MapSmall(n)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, unmap()) })
	if touch < Size/smallPage {
		for r := range n {
			require.NoError(t, unix.Madvise(b[r*Size+touch*smallPage:(r+1)*Size], unix.MADV_DONTNEED))
		}
	}
	return b
}

// onHuge is how much of b's mapping is resident, and on huge pages.
func onHuge(t *testing.T, b []byte) (rss, huge int64) {
	t.Helper()
	rss, huge, err := Region(b)
	require.NoError(t, err)
	return rss, huge
}

// A pass moves a dense range onto a huge page and leaves a sparse one as
// it is; the memory's contents stay.
func TestPass(t *testing.T) {
	if Mode() == "never" {
		t.Log("this machine's mode is never: MADV_COLLAPSE still applies")
	}
	dense := smallPages(t, 4, Size/smallPage)
	dense[Size+123] = 42
	sparse := smallPages(t, 4, 100)
	_, huge := onHuge(t, dense)
	require.Zero(t, huge, "the memory starts on small pages")

	n, failed, err := Pass()
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 4)
	for try := 0; failed > 0 && try < 10; try++ {
		_, failed, err = Pass() // a page the kernel found busy
		require.NoError(t, err)
	}

	rss, huge := onHuge(t, dense)
	require.EqualValues(t, 4*Size, huge, "the dense mapping is on huge pages (rss %d)", rss)
	require.EqualValues(t, 42, dense[Size+123])
	rss, huge = onHuge(t, sparse)
	require.Zero(t, huge, "a sparse range stays on small pages")
	require.EqualValues(t, 4*100*smallPage, rss, "and grows no larger")
}

// Run makes a pass once the memory on small pages grows, and stops with
// its context.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	c := &Collapser{Interval: 10 * time.Millisecond, Growth: Size}
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	b := smallPages(t, 8, Size/smallPage)
	waitFor(t, 10*time.Second, func() (bool, string) {
		rss, huge := onHuge(t, b)
		u, _ := ReadUsage()
		return huge == 8*Size, fmt.Sprintf("the mapping has %d of its %d resident bytes on huge pages after %d passes; the process %d of %d",
			huge, rss, c.Passes(), u.Huge, u.Anon)
	})
	require.Positive(t, c.Passes())
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// waitFor polls cond until it holds, failing with its reason at timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", timeout, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadUsage(t *testing.T) {
	b := smallPages(t, 2, Size/smallPage)
	u, err := ReadUsage()
	require.NoError(t, err)
	require.GreaterOrEqual(t, u.Anon, int64(len(b)))
	require.GreaterOrEqual(t, u.Small(), int64(0))
}
