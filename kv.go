package hearth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/internal/cluster"
)

// Errors of KV operations. Every error a KV method returns for these cases
// wraps one of them, so test with errors.Is.
var (
	// ErrKeyNotFound: the key has no value (never set, deleted or expired).
	ErrKeyNotFound = errors.New("hearth: key not found")
	// ErrKeyExists: Create found the key already set.
	ErrKeyExists = errors.New("hearth: key exists")
	// ErrRevisionMismatch: Update or a conditional Delete found the key at
	// another revision than the one given — someone else wrote it first.
	ErrRevisionMismatch = errors.New("hearth: revision mismatch")
)

// KV is a cluster-wide key-value bucket for a service's shared ephemeral
// state (counters, leases, registries), kept in NATS JetStream. Every write
// returns the key's new revision; Update and Delete take the revision the
// caller read, so concurrent writers on different nodes never lose each
// other's changes. Safe for concurrent use.
//
// Keys are dot-separated tokens of letters, digits and "-_=/" (NATS KV key
// rules); a bad key is an error, never a silent no-op.
type KV interface {
	// Get returns the key's current entry, or an error wrapping
	// ErrKeyNotFound.
	Get(ctx context.Context, key string) (KVEntry, error)
	// Put sets the key whatever it holds.
	Put(ctx context.Context, key string, value []byte) (rev uint64, err error)
	// Create sets the key only if it has no value; otherwise the error
	// wraps ErrKeyExists.
	Create(ctx context.Context, key string, value []byte) (rev uint64, err error)
	// Update sets the key only if its revision is still lastRev;
	// otherwise the error wraps ErrRevisionMismatch.
	Update(ctx context.Context, key string, value []byte, lastRev uint64) (rev uint64, err error)
	// Delete removes the key. lastRev 0 deletes whatever it holds; any
	// other lastRev deletes only that revision (else ErrRevisionMismatch).
	Delete(ctx context.Context, key string, lastRev uint64) error
	// Keys lists the keys that have a value.
	Keys(ctx context.Context) ([]string, error)
	// Watch follows the keys matching pattern ("*" matches one token, ">"
	// the rest; "" or ">" every key). The channel first gets every current
	// entry, then one entry with an empty Key marking that the current
	// state is complete, then each change as it happens (deletions with
	// Deleted set). The marker counts messages: a key rewritten while the
	// watch starts can come only after it, as a change. Entries that
	// expire by the bucket's TTL vanish without an event. The channel is
	// closed when ctx ends or the node stops.
	Watch(ctx context.Context, pattern string) (<-chan KVEntry, error)
}

// KVEntry is one key's value at a revision.
type KVEntry struct {
	Key      string
	Value    []byte
	Revision uint64
	// Deleted marks a deletion seen by a watcher.
	Deleted bool
}

// KV opens the bucket (creating it when missing) for this node's cluster:
// its name is prefixed with Config.Prefix, so clusters sharing a NATS
// server stay apart. ttl expires entries that long after their last write;
// 0 keeps them until deleted (a deleted key's marker is swept from the
// bucket ten minutes later, long after watches delivered it). The bucket's
// TTL is fixed when it is first created: later opens with another ttl get
// the first one. name is 1–64 of letters, digits, '_' and '-'. Call it once
// the node runs (from Service.OnStart on).
func (n *Node) KV(ctx context.Context, name string, ttl time.Duration) (KV, error) {
	if n.bus == nil {
		return nil, ErrNotRunning
	}
	if err := validBucket(name); err != nil {
		return nil, err
	}
	kv, err := n.bus.OpenKV(ctx, name, ttl)
	if err != nil {
		return nil, fmt.Errorf("hearth: open KV %q: %w", name, err)
	}
	return &natsKV{kv: kv, bus: n.bus, done: n.stop}, nil
}

func validBucket(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("hearth: KV bucket name %q must be 1–64 characters", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("hearth: KV bucket name %q may contain only letters, digits, '_' and '-'", name)
		}
	}
	return nil
}

// natsKV is KV over a JetStream key-value bucket. It uses only what
// nats-server 2.9 supports (no per-key TTL, no batch reads).
type natsKV struct {
	kv   jetstream.KeyValue
	bus  *cluster.Bus
	done <-chan struct{} // the node stopping ends watches
}

var _ KV = (*natsKV)(nil)

func (k *natsKV) Get(ctx context.Context, key string) (KVEntry, error) {
	e, err := k.kv.Get(ctx, key)
	if err != nil {
		return KVEntry{}, kvErr("get", key, err)
	}
	return KVEntry{Key: e.Key(), Value: e.Value(), Revision: e.Revision()}, nil
}

func (k *natsKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Put(ctx, key, value)
	return rev, kvErr("put", key, err)
}

func (k *natsKV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("hearth: KV create %q: %w", key, ErrKeyExists)
	}
	return rev, kvErr("create", key, err)
}

func (k *natsKV) Update(ctx context.Context, key string, value []byte, lastRev uint64) (uint64, error) {
	rev, err := k.kv.Update(ctx, key, value, lastRev)
	return rev, kvErr("update", key, err)
}

func (k *natsKV) Delete(ctx context.Context, key string, lastRev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if lastRev != 0 {
		opts = append(opts, jetstream.LastRevision(lastRev))
	}
	return kvErr("delete", key, k.kv.Delete(ctx, key, opts...))
}

// Keys lists what ListKeys lists, plus the keys it can miss: ListKeys is
// a watch, which ends its initial values by counting messages, so a key
// rewritten while it starts can come after that end (cluster.Bus.KVKeys).
// The bucket's stream names every key, deleted ones too; each one that
// ListKeys did not list is read to tell which. So a listing costs a read
// for every key deleted and not yet purged.
func (k *natsKV) Keys(ctx context.Context) ([]string, error) {
	l, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, kvErr("list keys", "", err)
	}
	var keys []string
	listed := map[string]bool{}
	for key := range l.Keys() {
		keys = append(keys, key)
		listed[key] = true
	}
	all, err := k.bus.KVKeys(ctx, k.kv)
	if err != nil {
		return nil, kvErr("list keys", "", err)
	}
	for _, key := range all {
		if listed[key] {
			continue
		}
		_, err := k.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return nil, kvErr("list keys", key, err)
		default:
			keys = append(keys, key)
		}
	}
	return keys, nil
}

func (k *natsKV) Watch(ctx context.Context, pattern string) (<-chan KVEntry, error) {
	if pattern == "" {
		pattern = ">"
	}
	w, err := k.kv.Watch(ctx, pattern)
	if err != nil {
		return nil, kvErr("watch", pattern, err)
	}
	out := make(chan KVEntry, 64)
	// This goroutine owns out: it alone sends on it and closes it.
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			case <-k.done:
				return
			}
			ev := KVEntry{} // nil from the watcher: the current state is complete
			if e != nil {
				op := e.Operation()
				ev = KVEntry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Deleted: op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			case <-k.done:
				return
			}
		}
	}()
	return out, nil
}

// kvErr maps JetStream's errors to the KV sentinels.
func kvErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		err = ErrKeyNotFound
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant): // the latter on replicated buckets
		err = ErrRevisionMismatch
	}
	return fmt.Errorf("hearth: KV %s %q: %w", op, key, err)
}
