package hearth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/internal/cluster"
)

// ErrNoLeader is wrapped by Lease.Ask when no node held the lease before
// ctx ended.
var ErrNoLeader = errors.New("hearth: no lease holder")

// Lease elects one node among those contending for a name — a single
// leader for cluster-wide work, such as a login queue. The holder keeps a
// KV key fresh; if it stops (crash, partition), the key expires after the
// TTL and another contender takes over. A Lease also carries requests to
// whichever node holds it (Serve, Ask), so the others reach the leader
// without knowing which node it is. Safe for concurrent use.
type Lease struct {
	l       *cluster.Lease
	nc      *nats.Conn
	subject string

	mu    sync.Mutex
	serve func(ctx context.Context, req []byte) []byte // set by Serve
	term  context.Context                              // the current leadership's; nil while not leading
	sub   *nats.Subscription                           // answers Ask while leading with serve set

	serving sync.Mutex // held while serve runs: one request at a time, from the bus or this node
}

// Lease contends for name (1–64 of letters, digits, '_' and '-') with ttl
// (zero: 3s). onElected, when not nil, runs in its own goroutine each time
// this node becomes the holder; its ctx ends when the lease is lost or
// stopped. It may run before Lease returns. Call Lease once the node runs
// (from Service.OnStart on), and Stop it when done.
func (n *Node) Lease(ctx context.Context, name string, ttl time.Duration, onElected func(ctx context.Context)) (*Lease, error) {
	if n.bus == nil {
		return nil, ErrNotRunning
	}
	if err := validBucket(name); err != nil {
		return nil, fmt.Errorf("hearth: lease name: %w", err)
	}
	l := &Lease{nc: n.bus.Conn(), subject: n.bus.Subjects().Prefix + ".lease." + name}
	cl, err := cluster.NewLease(ctx, n.bus, name, n.id, ttl, func(ctx context.Context) {
		l.elected(ctx)
		if onElected != nil {
			onElected(ctx)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("hearth: lease %q: %w", name, err)
	}
	l.mu.Lock()
	l.l = cl
	l.mu.Unlock()
	return l, nil
}

// elected starts a leadership term: Ask reaches this node until ctx ends.
func (l *Lease) elected(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.term = ctx
	l.subscribeLocked()
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.term != ctx {
			return // a later term has begun and owns the subscription
		}
		l.term = nil
		if l.sub != nil {
			_ = l.sub.Unsubscribe()
			l.sub = nil
		}
	})
}

// subscribeLocked answers Ask for the current term, if any, with serve.
// Lock should be held.
func (l *Lease) subscribeLocked() {
	if l.sub != nil {
		_ = l.sub.Unsubscribe()
		l.sub = nil
	}
	if l.term == nil || l.serve == nil {
		return
	}
	term, fn := l.term, l.serve
	sub, err := l.nc.Subscribe(l.subject, func(m *nats.Msg) {
		l.serving.Lock()
		resp := fn(term, m.Data)
		l.serving.Unlock()
		_ = m.Respond(resp)
	})
	if err == nil {
		l.sub = sub
	}
	// On error Ask finds nobody and retries until the lease moves on.
}

func (l *Lease) cluster() *cluster.Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.l
}

// Leading reports whether this node holds the lease now.
func (l *Lease) Leading() bool { return l.cluster().Leading() }

// Holder returns the id of the node holding the lease, as the cluster's KV
// shows it.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	h, err := l.cluster().Holder(ctx)
	if err != nil {
		return "", kvErr("get", "lease holder", err)
	}
	return h, nil
}

// Stop gives up the lease (so another node takes over at once) and stops
// contending.
func (l *Lease) Stop() { l.cluster().Stop() }

// Serve sets fn to answer Ask whenever this node holds the lease; ctx is
// that leadership term's. fn runs one request at a time: those from other
// nodes in arrival order, on one goroutine; this node's own Asks on their
// callers' goroutines, without crossing the bus. A later Serve replaces fn.
func (l *Lease) Serve(fn func(ctx context.Context, req []byte) []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serve = fn
	l.subscribeLocked()
}

// Ask sends req to the lease's holder and returns its answer. While nobody
// serves (at start, or for up to the TTL after a holder died) it retries
// until ctx ends, then returns an error wrapping ErrNoLeader.
func (l *Lease) Ask(ctx context.Context, req []byte) ([]byte, error) {
	// The holder answers its own node at once: no round trip through the
	// bus, nor a wait behind the bus's delivery of everyone else's.
	l.mu.Lock()
	term, fn, local := l.term, l.serve, l.sub != nil
	l.mu.Unlock()
	if local && term.Err() == nil {
		l.serving.Lock()
		defer l.serving.Unlock()
		return fn(term, req), nil
	}
	for {
		msg, err := l.nc.RequestWithContext(ctx, l.subject, req)
		if err == nil {
			return msg.Data, nil
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("hearth: ask lease holder: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("hearth: ask lease holder: %w (%w)", ErrNoLeader, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
