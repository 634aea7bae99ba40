package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease elects one holder of a named role among the nodes that contend for
// it — a single leader for cluster-wide work such as the login queue. The
// holder refreshes a KV key; if it stops (crash, partition), the key
// expires after the TTL and another contender takes over.
type Lease struct {
	kv     jetstream.KeyValue
	name   string
	holder string
	ttl    time.Duration

	mu      sync.Mutex
	rev     uint64
	leading bool

	onElected func(ctx context.Context)
	cancel    context.CancelFunc
	stop      chan struct{}
	done      chan struct{}
}

// NewLease contends for name as holder (the node id). onElected runs in
// its own goroutine each time this node becomes the leader; its ctx ends
// when leadership is lost or the lease is stopped.
func NewLease(ctx context.Context, b *Bus, name, holder string, ttl time.Duration, onElected func(ctx context.Context)) (*Lease, error) {
	if ttl <= 0 {
		ttl = 3 * time.Second
	}
	kv, err := b.openKV(ctx, bucketName(b.subj.Prefix, "leases"), ttl)
	if err != nil {
		return nil, err
	}
	l := &Lease{kv: kv, name: name, holder: holder, ttl: ttl, onElected: onElected, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// Leading reports whether this node holds the lease now.
func (l *Lease) Leading() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

// Holder returns the node holding the lease, as the KV shows it.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	e, err := l.kv.Get(ctx, l.name)
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

func (l *Lease) run() {
	defer close(l.done)
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	l.step()
	for {
		select {
		case <-l.stop:
			l.resign()
			return
		case <-tick.C:
			l.step()
		}
	}
}

// step refreshes the lease when held, or tries to take it.
func (l *Lease) step() {
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
	defer cancel()
	l.mu.Lock()
	leading, rev := l.leading, l.rev
	l.mu.Unlock()
	if leading {
		nrev, err := l.kv.Update(ctx, l.name, []byte(l.holder), rev)
		if err != nil {
			// Someone else holds it, or we could not reach the bus in time:
			// either way we can no longer be sure we lead.
			l.lose()
			return
		}
		l.mu.Lock()
		l.rev = nrev
		l.mu.Unlock()
		return
	}
	nrev, err := l.kv.Create(ctx, l.name, []byte(l.holder))
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return
		}
		// Our own key from before a restart: take it back.
		e, gerr := l.kv.Get(ctx, l.name)
		if gerr != nil || string(e.Value()) != l.holder {
			return
		}
		if nrev, err = l.kv.Update(ctx, l.name, []byte(l.holder), e.Revision()); err != nil {
			return
		}
	}
	lctx, lcancel := context.WithCancel(context.Background())
	l.mu.Lock()
	l.leading, l.rev, l.cancel = true, nrev, lcancel
	l.mu.Unlock()
	if l.onElected != nil {
		go l.onElected(lctx)
	}
}

func (l *Lease) lose() {
	l.mu.Lock()
	cancel := l.cancel
	l.leading, l.cancel = false, nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (l *Lease) resign() {
	l.mu.Lock()
	leading, rev := l.leading, l.rev
	l.mu.Unlock()
	l.lose()
	if leading {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.kv.Delete(ctx, l.name, jetstream.LastRevision(rev))
	}
}

// Stop gives up the lease (deleting it when held, so another node takes
// over at once) and stops contending.
func (l *Lease) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// KVKeys lists the keys of kv's bucket from its stream's state, deleted
// ones included (their delete markers are kept). A KV watch, and ListKeys
// which is one, ends its initial values by counting messages: a key
// rewritten while it starts can come after that end. The stream's state
// names every key present when it is read.
func (b *Bus) KVKeys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	s, err := b.kvStream(ctx, kv)
	if err != nil {
		return nil, err
	}
	bucket := kv.Bucket()
	prefix := "$KV." + bucket + "."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("cluster: list the keys of KV bucket %s: %w", bucket, err)
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if key, ok := strings.CutPrefix(subj, prefix); ok {
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// kvStream is the stream that holds kv.
func (b *Bus) kvStream(ctx context.Context, kv jetstream.KeyValue) (jetstream.Stream, error) {
	js, err := jetstream.New(b.jsc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, fmt.Errorf("cluster: the stream of KV bucket %s: %w", kv.Bucket(), err)
	}
	return s, nil
}

// KVBackfill applies the entries of kv that a watch has not delivered
// although its end-of-initial-values marker says it has (see KVKeys): for
// each key of the bucket that known does not report, it fetches the entry
// and passes it to apply. Call it at the marker, on the watch's goroutine,
// and skip the watch's later entries that Ahead.Stale reports.
func (b *Bus) KVBackfill(ctx context.Context, kv jetstream.KeyValue, known func(key string) bool, apply func(jetstream.KeyValueEntry)) (Ahead, error) {
	keys, err := b.KVKeys(ctx, kv)
	if err != nil {
		return nil, err
	}
	var ahead Ahead
	for _, key := range keys {
		if known(key) {
			continue
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // deleted, or gone meanwhile: the watch tells
		}
		apply(e)
		if ahead == nil {
			ahead = Ahead{}
		}
		ahead[key] = e.Revision()
	}
	return ahead, nil
}

// Ahead holds the revisions a KVBackfill applied ahead of its watch. Nil
// is empty. It belongs to the watch's goroutine.
type Ahead map[string]uint64

// Stale reports whether the watch's entry e is older than what the
// backfill applied for its key, so that applying it would undo a newer
// one. Once the watch has caught up with a key, the key is forgotten.
func (a Ahead) Stale(e jetstream.KeyValueEntry) bool {
	rev, ok := a[e.Key()]
	if !ok {
		return false
	}
	if e.Revision() <= rev {
		return true
	}
	delete(a, e.Key())
	return false
}

// OpenKV opens (creating when missing) a KV bucket named <prefix>_<name>,
// for services that keep shared ephemeral state on the bus. ttl 0 keeps
// entries until deleted.
func (b *Bus) OpenKV(ctx context.Context, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	return b.openKV(ctx, bucketName(b.subj.Prefix, name), ttl)
}
