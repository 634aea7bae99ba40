package hearth

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// goid is the calling goroutine's id, from its stack trace's first line.
func goid() uint64 {
	var b [64]byte
	line := b[:runtime.Stack(b[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(line[:bytes.IndexByte(line, ' ')]), 10, 64)
	return id
}

// startWorkers returns workers that end with the test: their quit closes
// and the test waits until their goroutines are gone, so that the next
// test counts goroutines from the same base.
func startWorkers(t *testing.T) *workers {
	before := runtime.NumGoroutine()
	quit := make(chan struct{})
	t.Cleanup(func() {
		close(quit)
		waitFor(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "the idle workers did not end after quit")
	})
	return newWorkers(quit)
}

func TestWorkersReuseAGoroutine(t *testing.T) {
	w := startWorkers(t)
	ran := func() uint64 {
		got := make(chan uint64, 1)
		w.run(func() { got <- goid() })
		return <-got
	}
	first := ran()
	// The worker is idle once it waits for work again; until then a run
	// starts another goroutine, which is allowed.
	waitFor(t, 10*time.Second, func() bool { return ran() == first }, "no request ran on the first worker's goroutine")
}

func TestWorkersRunConcurrently(t *testing.T) {
	w := startWorkers(t)
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	for range n {
		w.run(func() {
			started.Done()
			<-release // all n block at once: none waits for another to end
		})
	}
	done := make(chan struct{})
	go func() { started.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gave up after 10s: not every task started while the others were still running")
	}
	close(release)
}

// The workers wait for more work after their task, and end when the node
// does (startWorkers' cleanup waits for that).
func TestWorkersOutliveATask(t *testing.T) {
	before := runtime.NumGoroutine()
	w := startWorkers(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		w.run(wg.Done)
	}
	wg.Wait()
	require.Greater(t, runtime.NumGoroutine(), before, "the workers should wait for more work")
}

// A burst of tasks side by side leaves at most maxIdleWorkers waiting for
// more, not a goroutine per task of the burst.
func TestWorkersKeepFewIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	w := startWorkers(t)
	const n = 4 * maxIdleWorkers
	var started, ended sync.WaitGroup
	started.Add(n)
	ended.Add(n)
	release := make(chan struct{})
	for range n {
		w.run(func() {
			defer ended.Done()
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	ended.Wait()
	waitFor(t, 10*time.Second, func() bool {
		return runtime.NumGoroutine()-before <= maxIdleWorkers && w.idle() == maxIdleWorkers
	}, "more than maxIdleWorkers workers stayed after the burst, or fewer than that wait")
}

// runSideBySide runs n tasks that all wait until every one has started,
// so n workers run at once, and lets them end.
func runSideBySide(w *workers, n int) {
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	for range n {
		w.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
}

// An idle worker is the next to run: after a burst left several idle, one
// after another tasks all run on the goroutine that finished last, so the
// others stay parked (workers' doc says why that matters).
func TestWorkersPreferTheLastIdle(t *testing.T) {
	w := startWorkers(t)
	const burst = 8
	runSideBySide(w, burst)
	allIdle := func() bool { return w.idle() == burst }
	waitFor(t, 10*time.Second, allIdle, "the burst's workers did not all go idle")
	ran := map[uint64]int{}
	for range 50 {
		got := make(chan uint64, 1)
		w.run(func() { got <- goid() })
		ran[<-got]++
		waitFor(t, 10*time.Second, allIdle, "the worker did not go idle again")
	}
	require.Len(t, ran, 1, "tasks run one after another rotated through the idle workers: %v", ran)
}

// Workers idle for idleFor end, and a task after that still runs (on a
// new worker).
func TestWorkersEndWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	w := startWorkers(t)
	w.idleFor = 50 * time.Millisecond
	const burst = 20
	runSideBySide(w, burst)
	waitFor(t, 10*time.Second, func() bool {
		return w.idle() == 0 && runtime.NumGoroutine() <= before
	}, "the idle workers did not end, or their goroutines stayed")
	done := make(chan struct{})
	w.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("gave up after 10s: no task ran once the idle workers had ended")
	}
}
