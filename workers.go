package hearth

import (
	"sync/atomic"
	"time"
)

// workerIdle is how long a handler goroutine waits for its next request
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
// Handler goroutines use it, how many of them run at once still bounded
// by Node.handlers, which callers take before run; so does the node's
// gate, for the readers of parked sessions that wake and for output
// flushes (gate.Config.Go), and the room host, for registry writes and
// control requests. A worker ends after workerIdle without work, when
// maxIdleWorkers others already wait, or when quit closes.
type workers struct {
	tasks chan func()     // unbuffered: a send succeeds only to an idle worker
	quit  <-chan struct{} // the node finished shutting down
	idle  atomic.Int32    // workers waiting on tasks
}

func newWorkers(quit <-chan struct{}) *workers {
	return &workers{tasks: make(chan func()), quit: quit}
}

// run runs fn on an idle worker, or on a new one if none is idle.
func (w *workers) run(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go w.work(fn)
	}
}

func (w *workers) work(fn func()) {
	fn()
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	for {
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case fn := <-w.tasks:
			w.idle.Add(-1)
			fn()
		case <-idle.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}
