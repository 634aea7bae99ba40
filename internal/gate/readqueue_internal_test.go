package gate

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A readQueue reads every woken session once, never with more than max
// runners at once, and in the order the sessions woke once they queue; a
// runner that gives up its slot to block (leave) lets the queue go on
// without it, even with a bound of one.
func TestReadQueueBoundsReaders(t *testing.T) {
	for _, tc := range []struct {
		name     string
		max      int
		sessions int
		blockers int // the first sessions' reads leave and block until the end
	}{
		{"one reader", 1, 50, 0},
		{"two readers", 2, 200, 0},
		{"one reader, blocking reads leave", 1, 60, 3},
		{"four readers, blocking reads leave", 4, 200, 10},
		{"unbounded", -1, 100, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				rq      readQueue
				running atomic.Int32 // runners holding a slot inside read
				peak    atomic.Int32
				mu      sync.Mutex
				order   []int
				reads   = map[*Session]int{}
				unblock = make(chan struct{})
				blocked sync.WaitGroup
				done    = make(chan struct{}, tc.sessions)
			)
			ss := make([]*Session, tc.sessions)
			index := map[*Session]int{}
			for i := range ss {
				ss[i] = &Session{}
				index[ss[i]] = i
			}
			gate := make(chan struct{}) // holds the first reads until every session is queued
			rq.goFn = func(fn func()) { go fn() }
			rq.max = tc.max
			rq.read = func(s *Session, slot *readSlot) {
				i := index[s]
				if slot.held {
					n := running.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
				}
				<-gate
				mu.Lock()
				order = append(order, i)
				reads[s]++
				mu.Unlock()
				if i < tc.blockers {
					if slot.held {
						running.Add(-1)
					}
					rq.leave(slot)
					blocked.Add(1)
					done <- struct{}{}
					<-unblock
					blocked.Done()
					return
				}
				if slot.held {
					running.Add(-1)
				}
				done <- struct{}{}
			}
			for _, s := range ss {
				rq.add(s)
			}
			close(gate)
			for range tc.sessions {
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					mu.Lock()
					n := len(order)
					mu.Unlock()
					t.Fatalf("only %d of %d sessions read in 10s (%d waiting in the queue)", n, tc.sessions, rq.waiting())
				}
			}
			close(unblock)
			blocked.Wait()

			require.Len(t, reads, tc.sessions, "every session read")
			for s, n := range reads {
				require.Equal(t, 1, n, "session %d read %d times", index[s], n)
			}
			if tc.max > 0 {
				require.LessOrEqual(t, int(peak.Load()), tc.max, "runners reading at once")
				// The first max sessions start runners; the rest queue and
				// are taken in the order they woke.
				mu.Lock()
				var queued []int
				for _, i := range order {
					if i >= tc.max {
						queued = append(queued, i)
					}
				}
				mu.Unlock()
				if tc.max == 1 {
					require.IsIncreasing(t, queued, "queued sessions read in the order they woke")
				}
			}
			require.Zero(t, rq.waiting(), "queue empty")
			// The runners give their slots back after their last read.
			require.Eventually(t, func() bool {
				rq.mu.Lock()
				defer rq.mu.Unlock()
				return rq.running == 0
			}, 10*time.Second, time.Millisecond, "slots not given back within 10s after the last read")
		})
	}
}

// A queue that never empties (a runner always finds a next session) does
// not keep all it has handed out: its slice slides down.
func TestReadQueueSlides(t *testing.T) {
	rq := readQueue{max: 1, running: 1}
	for i := range 5000 {
		rq.q = append(rq.q, &Session{})
		if i%2 == 0 {
			require.NotNil(t, rq.next())
		}
	}
	require.Equal(t, 2500, rq.waiting())
	require.LessOrEqual(t, rq.head, max(1024, rq.waiting()), "taken entries kept: at most 1024, or as many as wait")
	for range 2500 {
		require.NotNil(t, rq.next())
	}
	require.Nil(t, rq.next())
	require.Zero(t, rq.running, "the last next gave the slot back")
	require.Equal(t, 0, len(rq.q), fmt.Sprint("queue reset, head ", rq.head))
}

// Between two sessions a runner yields its core, and reads the queue in
// the order the sessions woke; it ends without yielding once the queue is
// empty.
func TestReadQueueYieldsBetweenSessions(t *testing.T) {
	yields := 0
	var reads []*Session
	rq := readQueue{max: 1, running: 1}
	rq.yield = func() { yields++ }
	rq.read = func(s *Session, _ *readSlot) { reads = append(reads, s) }
	ss := make([]*Session, 10)
	for i := range ss {
		ss[i] = &Session{}
		if i > 0 {
			rq.q = append(rq.q, ss[i])
		}
	}
	rq.run(ss[0], true) // on this goroutine: the queue is read in order
	require.Equal(t, ss, reads)
	require.Equal(t, len(ss)-1, yields, "a yield before each queued session, none once the queue is empty")
	require.Zero(t, rq.running)
}
