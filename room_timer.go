package hearth

import (
	"container/heap"
	"sync"
	"time"
)

// Timer is a room's pending After or Every. Its callback runs on the room's
// goroutine, so it needs no lock; it never runs after Cancel or after the
// room closed.
type Timer struct {
	room  *Room
	name  string
	every time.Duration // 0 for a one-shot timer
	tick  bool          // the room type's fixed tick, not a handler timer

	// at, when and index are written under the node's timerQueue.mu; at
	// is only written by the room's goroutine, which may read it without
	// the lock.
	at    time.Time
	when  int64 // at on the monotonic clock, since timerEpoch: the heap's key
	index int   // in the heap; -1 when not queued

	live bool // owned by the room's goroutine
}

// Name is the name the timer was set with.
func (t *Timer) Name() string { return t.name }

// Deadline is when the timer fires next: a countdown clients can be shown.
func (t *Timer) Deadline() time.Time { return t.at }

// Remaining is the time left until the timer fires, never negative.
func (t *Timer) Remaining() time.Duration { return max(0, time.Until(t.at)) }

// Cancel stops the timer; its callback will not run, even when it is
// already due. It reports whether the timer was still pending. Call it only
// from the room's goroutine (handler code).
func (t *Timer) Cancel() bool {
	if !t.live {
		return false
	}
	t.live = false
	delete(t.room.timers, t)
	t.room.host.timers.remove(t)
	return true
}

// timerQueue is the node's one timer heap for every room: a single
// goroutine sleeps until the earliest deadline and posts due timers to
// their rooms' mailboxes. mu guards h and every queued Timer's at and index.
type timerQueue struct {
	mu   sync.Mutex
	h    timerHeap
	wake chan struct{} // cap 1: the earliest deadline changed
	stop chan struct{}
	done chan struct{}
}

func newTimerQueue() *timerQueue {
	return &timerQueue{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// timerEpoch is the origin of Timer.when: integer deadlines compare
// faster than time.Time's in the heap.
var timerEpoch = time.Now()

// add queues t for at (called from t's room's goroutine).
func (q *timerQueue) add(t *Timer, at time.Time) {
	q.mu.Lock()
	t.at = at
	t.when = int64(at.Sub(timerEpoch))
	if t.index >= 0 {
		heap.Fix(&q.h, t.index)
	} else {
		heap.Push(&q.h, t)
	}
	first := q.h[0] == t
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *timerQueue) remove(t *Timer) {
	q.mu.Lock()
	if t.index >= 0 {
		heap.Remove(&q.h, t.index)
	}
	q.mu.Unlock()
}

// len is the number of queued timers.
func (q *timerQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h)
}

// run is the queue's goroutine.
func (q *timerQueue) run() {
	defer close(q.done)
	sleep := time.NewTimer(time.Hour)
	defer sleep.Stop()
	var due []*Timer
	for {
		q.mu.Lock()
		now := int64(time.Since(timerEpoch))
		for len(q.h) > 0 && q.h[0].when <= now {
			due = append(due, heap.Pop(&q.h).(*Timer))
		}
		wait := time.Hour
		if len(q.h) > 0 {
			wait = time.Duration(q.h[0].when - now)
		}
		q.mu.Unlock()
		for i, t := range due {
			t.room.fire(t)
			due[i] = nil
		}
		due = due[:0]
		sleep.Reset(wait)
		select {
		case <-sleep.C:
		case <-q.wake:
			if !sleep.Stop() {
				select {
				case <-sleep.C:
				default:
				}
			}
		case <-q.stop:
			return
		}
	}
}

func (q *timerQueue) close() {
	close(q.stop)
	<-q.done
}

// timerHeap orders timers by deadline.
type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
