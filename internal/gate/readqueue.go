package gate

import (
	"runtime"
	"sync"
)

// readQueue runs the readers of parked sessions the poller wakes: at most
// max goroutines at once (Config.Readers), each reading one woken session
// after another in the order they woke, and yielding its core between two
// (runtime.Gosched: it goes to the scheduler's global queue, behind every
// goroutine already runnable on the core). A runner that finds the queue
// empty ends without yielding.
//
// A goroutine per woken session made readers most of what was runnable:
// in a collection's mark, with the collector holding part of both cores,
// ~100 goroutines waited for a core at once (docs/benchmarks.md § bots,
// session 32), and a room's turn that a timer started — a countdown's push —
// waited behind all of them. Bounded and yielding, the readers take what
// the rooms, handlers and flushes leave: a client's next request waits
// instead of everyone's countdown. A reader that blocks (on the connection,
// for a client that talks often, or while its session ends) gives its
// place to a new goroutine first (leave).
//
// mu guards q, head and running. A session is queued at most once: only
// the wake that moved it from readParked to readRunning adds it, so q
// holds at most one pointer per session of the gate.
type readQueue struct {
	goFn func(func()) // Config.Go
	max  int          // Config.Readers; negative: a goroutine per session
	// read reads a woken session until it parks or ends
	// ((*Session).resumeReads; tests replace it).
	read func(s *Session, slot *readSlot)
	// yield gives up the core between two sessions (nil:
	// runtime.Gosched; tests count them).
	yield func()

	mu      sync.Mutex
	q       []*Session // woken sessions waiting for a reader, from head
	head    int
	running int // goroutines holding a slot
}

// readSlot is a runner's place in the queue's bound: held by the runner's
// goroutine only, which gives it up once (leave).
type readSlot struct{ held bool }

// add has s read by a runner: a new one if fewer than max run, else the
// next free one.
func (rq *readQueue) add(s *Session) {
	if rq.max < 0 {
		rq.goFn(func() { rq.run(s, false) })
		return
	}
	rq.mu.Lock()
	if rq.running < rq.max {
		rq.running++
		rq.mu.Unlock()
		rq.goFn(func() { rq.run(s, true) })
		return
	}
	rq.q = append(rq.q, s)
	rq.mu.Unlock()
}

// run reads s, then the queue's next sessions until it is empty or the
// runner gave up its slot to block.
func (rq *readQueue) run(s *Session, bounded bool) {
	slot := &readSlot{held: bounded}
	for {
		rq.read(s, slot)
		if !slot.held {
			return
		}
		if s = rq.next(); s == nil {
			return
		}
		// Sessions wait, so the cores are short: whatever became runnable
		// meanwhile — often the handler of the request just read, or a
		// room's turn — goes first. Only then: a goroutine in the global
		// queue is taken before the network poller is looked at, which
		// delays every goroutine waiting on a socket.
		if rq.yield != nil {
			rq.yield()
		} else {
			runtime.Gosched()
		}
	}
}

// next takes the queue's next session, or gives up the caller's slot when
// there is none.
func (rq *readQueue) next() *Session {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rq.head == len(rq.q) {
		rq.running--
		rq.q, rq.head = rq.q[:0], 0 // every taken entry is nil already
		return nil
	}
	s := rq.q[rq.head]
	rq.q[rq.head] = nil
	rq.head++
	if rq.head >= 1024 && rq.head*2 >= len(rq.q) {
		// Slide the rest down so a queue that never empties does not
		// grow without bound.
		n := copy(rq.q, rq.q[rq.head:])
		clear(rq.q[n:])
		rq.q, rq.head = rq.q[:n], 0
	}
	return s
}

// leave gives up slot, if held, before its goroutine blocks: the next
// queued session gets a new runner in its place.
func (rq *readQueue) leave(slot *readSlot) {
	if slot == nil || !slot.held {
		return
	}
	slot.held = false
	if s := rq.next(); s != nil {
		rq.goFn(func() { rq.run(s, true) })
	}
}

// waiting is how many woken sessions wait for a reader (the
// hearth_read_queue gauge).
func (rq *readQueue) waiting() int {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return len(rq.q) - rq.head
}
