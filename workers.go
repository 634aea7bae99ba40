package hearth

import "time"

// workerIdle is how long a handler goroutine waits for its next request
// before it ends.
const workerIdle = 5 * time.Second

// workers runs request handlers on goroutines that outlive one request. A
// goroutine per request started on a 2 KB stack and grew it on every
// request (JSON, SQL: three or four copies to 16 KB), which was ~4% of a
// busy node's CPU; a worker keeps its grown stack for the next one.
//
// Handler goroutines use it, how many of them run at once still bounded
// by Node.handlers, which callers take before run; so does the node's
// gate, for the readers of parked sessions that wake and for output
// flushes (gate.Config.Go). A worker ends after workerIdle without work,
// or when quit closes.
type workers struct {
	tasks chan func()     // unbuffered: a send succeeds only to an idle worker
	quit  <-chan struct{} // the node finished shutting down
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
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case fn := <-w.tasks:
			fn()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}
