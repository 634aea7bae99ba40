package client

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// ErrPollerClosed ends a client whose connection a closed Poller was
// reading.
var ErrPollerClosed = errors.New("hearth client: poller closed")

// Poller reads the connections of many clients on a few goroutines
// (Options.Poller). A client on its own goroutine costs a wake-up of that
// goroutine, and a second read that finds nothing, for every frame it
// reads; at tens of thousands of connections in one process those are most
// of the process's CPU. A Poller waits on all of its connections at once
// (epoll) and reads each once per wake-up, level-triggered, so a frame
// costs one read and no goroutine switch.
//
// A Poller is available on Linux; elsewhere NewPoller returns an error and
// clients read on their own goroutines.
type Poller struct {
	loops []*pollLoop
	next  atomic.Uint32
}

// PollerOptions configure a Poller. The zero value is a Poller with a
// goroutine per GOMAXPROCS that reads each frame as it comes.
type PollerOptions struct {
	// Goroutines is the number of goroutines reading; zero means
	// GOMAXPROCS.
	Goroutines int

	// Gather is how long a goroutine waits, after reading what was ready,
	// before it looks again: what arrives meanwhile is read in one go. At
	// thousands of frames a second most frames come alone, and each wake-up
	// of a sleeping thread costs about as much as reading the frame; a
	// millisecond's gathering turns thousands of wake-ups into a thousand
	// at most, for at most that much more latency. Zero: no gathering.
	Gather time.Duration
}

// NewPoller starts a Poller. Close stops it.
func NewPoller(o PollerOptions) (*Poller, error) {
	n := o.Goroutines
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Poller{}
	for range n {
		l, err := newPollLoop(o.Gather)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	return p, nil
}

// Close stops the Poller. Clients whose connections it still reads end
// with ErrPollerClosed (without Options.Reconnect's resume: the Poller is
// gone, not the connection); close them first to end them with ErrClosed.
// Close waits for the reading goroutines to stop. Closing a closed Poller
// does nothing.
func (p *Poller) Close() {
	for _, l := range p.loops {
		l.stop()
	}
}

// usable reports whether p can read connections: a Poller from NewPoller.
func (p *Poller) usable() bool { return p != nil && len(p.loops) > 0 }

// add has one of the Poller's goroutines read cn, a connection of c, from
// now on; false if it cannot (cn was not dialled for it, or the Poller has
// stopped).
func (p *Poller) add(c *Client, cn *conn) bool {
	if len(p.loops) == 0 {
		return false
	}
	l := p.loops[int(p.next.Add(1))%len(p.loops)]
	return l.add(c, cn)
}
