package hearth

import (
	"sync"
	"time"
)

// workerIdle is how long a handler goroutine waits for its next task
// before it ends.
const workerIdle = 5 * time.Second

// maxIdleWorkers bounds the workers that wait for a task at once: a burst
// that ran thousands of tasks side by side leaves this many, not thousands
// of goroutines for workerIdle. At 20,000 Niu Niu bots the tables node
// keeps 500–900 idle; a cap of 16 made it start goroutines afresh instead,
// and its collections' marks took a third longer (docs/benchmarks.md § bots,
// sessions 26–27). The hearth_workers_idle gauge shows how many wait.
const maxIdleWorkers = 1024

// workers runs tasks on goroutines that outlive one task. A goroutine per
// request started on a 2 KB stack and grew it on every request (JSON, SQL:
// three or four copies to 16 KB), which was ~4% of a busy node's CPU; a
// worker keeps its grown stack for the next one.
//
// The idle workers are a stack: a task goes to the worker that went idle
// last. A queue handed each task to the one idle longest, so in a quarter
// second of steady load every one of hundreds of idle workers ran
// something; in a collection's mark each goroutine's first allocation
// makes it do at least 64 KB of marking (runtime gcOverAssistWork), and
// hundreds of them at once took ~1.3 cores from the pushes. From the top
// of the stack the same few workers run nearly everything and the rest
// stay parked.
//
// Handler goroutines use it, how many of them run at once still bounded
// by Node.handlers, which callers take before run; so do the node's gate,
// for the readers of parked sessions that wake and for output flushes
// (gate.Config.Go), and the room host, for rooms' mailboxes, registry
// writes and control requests. A worker ends after workerIdle without
// work (the bottom of the stack first), when maxIdleWorkers others already
// wait, or when quit closes.
type workers struct {
	quit    <-chan struct{} // the node finished shutting down
	idleFor time.Duration   // workerIdle; tests shorten it

	mu     sync.Mutex
	stack  []*worker // idle workers, the most recently idle last
	reaper *time.Timer
}

// worker is one goroutine of workers. task has room for one: run hands a
// popped worker its task without waiting, and the reaper hands it nil, for
// "end".
type worker struct {
	task  chan func()
	since time.Time // when it went idle; mu
}

func newWorkers(quit <-chan struct{}) *workers {
	return &workers{quit: quit, idleFor: workerIdle}
}

// run runs fn on the most recently idle worker, or on a new one if none is
// idle.
func (w *workers) run(fn func()) {
	w.mu.Lock()
	if n := len(w.stack); n > 0 {
		wk := w.stack[n-1]
		w.stack[n-1] = nil
		w.stack = w.stack[:n-1]
		w.mu.Unlock()
		wk.task <- fn
		return
	}
	w.mu.Unlock()
	go w.work(&worker{task: make(chan func(), 1)}, fn)
}

func (w *workers) work(wk *worker, fn func()) {
	for {
		fn()
		if !w.park(wk) {
			return
		}
		select {
		case fn = <-wk.task:
		case <-w.quit:
			if !w.unpark(wk) {
				fn = <-wk.task // run popped it: its task is on the way
				break
			}
			return
		}
		if fn == nil {
			return // reaped
		}
	}
}

// idle is how many workers wait for a task (the hearth_workers_idle
// gauge).
func (w *workers) idle() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.stack)
}

// park puts wk on the idle stack, unless maxIdleWorkers already wait.
func (w *workers) park(wk *worker) bool {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.stack) >= maxIdleWorkers {
		return false
	}
	wk.since = now
	w.stack = append(w.stack, wk)
	if w.reaper == nil {
		w.reaper = time.AfterFunc(w.idleFor, w.reap)
	}
	return true
}

// unpark takes wk off the idle stack, reporting whether it was there.
func (w *workers) unpark(wk *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, x := range w.stack {
		if x == wk {
			copy(w.stack[i:], w.stack[i+1:])
			w.stack[len(w.stack)-1] = nil
			w.stack = w.stack[:len(w.stack)-1]
			return true
		}
	}
	return false
}

// reap ends the workers idle for idleFor or longer, from the bottom of
// the stack, and comes back while any stay idle.
func (w *workers) reap() {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for n < len(w.stack) && now.Sub(w.stack[n].since) >= w.idleFor {
		w.stack[n].task <- nil // room for one, and an idle worker's is empty
		n++
	}
	if n > 0 {
		rest := copy(w.stack, w.stack[n:])
		clear(w.stack[rest:])
		w.stack = w.stack[:rest]
	}
	w.reaper = nil
	if len(w.stack) > 0 {
		select {
		case <-w.quit:
		default:
			// Due when the oldest left has waited idleFor.
			w.reaper = time.AfterFunc(w.idleFor-now.Sub(w.stack[0].since), w.reap)
		}
	}
}
