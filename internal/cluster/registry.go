package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NodeState is where a node is in its life, as the registry shows it.
type NodeState string

const (
	StateStarting NodeState = "starting"
	StateServing  NodeState = "serving"
	StateDraining NodeState = "draining"
)

// NodeInfo is what a node publishes about itself in the registry.
type NodeInfo struct {
	ID      string    `json:"id"`
	Roles   []string  `json:"roles"`
	Version string    `json:"version"`
	State   NodeState `json:"state"`
	// TCP and WS are the gate's client endpoints as clients should dial
	// them ("tcp://host:7100", "ws://host:7101/ws"); empty without a gate.
	TCP   string `json:"tcp,omitempty"`
	WS    string `json:"ws,omitempty"`
	Admin string `json:"admin,omitempty"`
	// Load.
	Sessions int `json:"sessions"`
	InFlight int `json:"in_flight"`
	// Routes the node's services serve, for gates' route dictionaries.
	Routes  []string  `json:"routes,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// HasRole reports whether the node runs role.
func (n *NodeInfo) HasRole(role string) bool { return slices.Contains(n.Roles, role) }

// EventKind says what happened to a node in the registry.
type RegistryEventKind int

const (
	NodeJoined RegistryEventKind = iota + 1
	NodeUpdated
	NodeLeft
)

func (k RegistryEventKind) String() string {
	switch k {
	case NodeJoined:
		return "join"
	case NodeUpdated:
		return "update"
	case NodeLeft:
		return "leave"
	}
	return "unknown"
}

// RegistryEvent is one change seen by a registry watcher.
type RegistryEvent struct {
	Kind RegistryEventKind
	Node NodeInfo
}

// ErrNodeIDTaken is returned when a live node already has this node's id.
var ErrNodeIDTaken = errors.New("cluster: node id is in use by a live node")

// DefaultRefresh is how often a node refreshes its registry entry; a node
// not refreshed for three intervals is gone. At 500 ms a dead node is
// noticed 1.5–2 s after its last refresh, so its players hear of it within
// the 3 s a player waits.
const DefaultRefresh = 500 * time.Millisecond

// Registry keeps this node's entry in the cluster's node bucket fresh and
// maintains a local view of every other node.
type Registry struct {
	bus      *Bus
	kv       jetstream.KeyValue
	interval time.Duration
	info     func() NodeInfo

	mu       sync.Mutex
	nodes    map[string]*seenNode
	left     map[string]leftNode // nodes seen leaving, until they rejoin
	watchers map[int]func(RegistryEvent)
	nextW    int
	started  time.Time
	self     string    // this node's id
	selfSeen time.Time // when the watch last delivered this node's entry
	lastPut  time.Time // when this node's entry was last written

	stop chan struct{}
	done sync.WaitGroup
}

type seenNode struct {
	info NodeInfo
	seen time.Time // local clock, so clock skew between nodes does not matter
	rev  uint64    // the bucket revision of the entry last seen
}

// leftNode is a node seen leaving: when, and the revision of its last
// entry seen (0 when it was deleted).
type leftNode struct {
	at  time.Time
	rev uint64
}

func (b *Bus) nodesBucket() string { return bucketName(b.subj.Prefix, "nodes") }

func bucketName(prefix, name string) string {
	out := []byte(prefix + "_" + name)
	for i, c := range out {
		if c == '.' || c == ':' {
			out[i] = '_'
		}
	}
	return string(out)
}

// openKV opens (creating when missing) a KV bucket. File storage: a NATS
// server that restarts keeps the registry and presence (entries expire by
// TTL or are purged, so the buckets stay small); with memory storage every
// restart would wipe them under the running nodes.
func (b *Bus) openKV(ctx context.Context, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	js, err := jetstream.New(b.jsc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: ttl, History: 1, Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: open KV bucket %s (does the NATS server have JetStream enabled?): %w", bucket, err)
	}
	// The bucket as it exists decides: a TTL expires its markers too.
	if st, err := kv.Status(ctx); err == nil && st.TTL() == 0 {
		b.sweepable(kv)
	}
	return kv, nil
}

// NewRegistry opens the node bucket. info is called on every refresh for
// this node's current entry.
func NewRegistry(ctx context.Context, b *Bus, interval time.Duration, info func() NodeInfo) (*Registry, error) {
	if interval <= 0 {
		interval = DefaultRefresh
	}
	kv, err := b.openKV(ctx, b.nodesBucket(), 3*interval)
	if err != nil {
		return nil, err
	}
	return &Registry{
		bus: b, kv: kv, interval: interval, info: info,
		nodes: map[string]*seenNode{}, left: map[string]leftNode{}, watchers: map[int]func(RegistryEvent){},
		stop: make(chan struct{}), started: time.Now(),
	}, nil
}

// Join claims this node's id — failing with ErrNodeIDTaken when a live node
// holds it — then keeps the entry fresh and watches the others.
func (r *Registry) Join(ctx context.Context) error {
	info := r.entry()
	val, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if _, err := r.claim(ctx, info.ID, val); err != nil {
		return err
	}
	now := time.Now()
	r.mu.Lock()
	r.self = info.ID
	r.selfSeen, r.lastPut = now, now
	r.mu.Unlock()

	w, cancel, err := r.startWatch()
	if err != nil {
		return fmt.Errorf("cluster: watch nodes: %w", err)
	}
	loaded := make(chan struct{})
	r.done.Add(2)
	go r.watch(w, cancel, loaded)
	go r.refresh()
	// Return with the nodes already in the bucket known: a gate that
	// started serving before would hand its first clients a route
	// dictionary without its peers' routes.
	t := time.NewTimer(initialLoadWait)
	defer t.Stop()
	select {
	case <-loaded:
	case <-ctx.Done():
	case <-t.C:
		r.bus.log.Warn("registry: the cluster's nodes not loaded yet; serving on, they are added as they arrive", "waited", initialLoadWait)
	}
	return nil
}

// initialLoadWait bounds how long Join waits for the nodes already
// registered.
const initialLoadWait = 5 * time.Second

// startWatch watches the whole bucket, until the returned cancel is called
// (not as long as any caller's ctx).
func (r *Registry) startWatch() (jetstream.KeyWatcher, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return w, cancel, nil
}

// claim creates this node's entry. An existing entry is either a live node
// (it is refreshed while we watch: refuse) or one that died without leaving
// (it expires within the TTL: take over). Deciding by revisions rather than
// timestamps keeps clock skew between machines out of it.
func (r *Registry) claim(ctx context.Context, id string, val []byte) (uint64, error) {
	deadline := time.Now().Add(3*r.interval + r.interval/2)
	var seenRev uint64
	for {
		rev, err := r.kv.Create(ctx, id, val)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("cluster: register node: %w", err)
		}
		e, err := r.kv.Get(ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			return 0, fmt.Errorf("cluster: register node: %w", err)
		}
		if seenRev != 0 && e.Revision() != seenRev {
			var other NodeInfo
			_ = json.Unmarshal(e.Value(), &other)
			return 0, fmt.Errorf("%w: %q (started %s) is alive; pick another --node-id or stop that node",
				ErrNodeIDTaken, id, other.Started.Format(time.RFC3339))
		}
		seenRev = e.Revision()
		if time.Now().After(deadline) {
			// Neither refreshed nor expired: the bucket has no TTL we trust.
			return r.kv.Update(ctx, id, val, seenRev)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(r.interval / 2):
		}
	}
}

func (r *Registry) entry() NodeInfo {
	info := r.info()
	info.Updated = time.Now().UTC()
	if info.Started.IsZero() {
		info.Started = r.started.UTC()
	}
	return info
}

// refresh re-puts this node's entry every interval and drops nodes not
// seen for three intervals.
func (r *Registry) refresh() {
	defer r.done.Done()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.Refresh()
			r.expire(time.Now())
		}
	}
}

// Refresh publishes this node's entry now (e.g. after a state change).
func (r *Registry) Refresh() {
	val, err := json.Marshal(r.entry())
	if err != nil {
		return
	}
	// Longer than an interval: on a loaded machine a put that takes a
	// little longer should still land, not fail and leave the entry to
	// age; the ticker skips the ticks it blocked.
	ctx, cancel := context.WithTimeout(context.Background(), 2*r.interval)
	defer cancel()
	if _, err := r.kv.Put(ctx, r.info().ID, val); err != nil {
		r.bus.log.Warn("registry refresh failed", "err", err)
		return
	}
	r.mu.Lock()
	r.lastPut = time.Now()
	r.mu.Unlock()
}

// watch applies the bucket's changes until Leave, and closes loaded once
// the entries already there are known. It watches again when the watch ends
// or stops delivering this node's own refreshes although they are written:
// after a NATS server restart the watch's consumer is gone, and nats.go
// would notice only after many heartbeats, or give up.
func (r *Registry) watch(w jetstream.KeyWatcher, cancel context.CancelFunc, loaded chan struct{}) {
	defer r.done.Done()
	stopWatch := func() {
		if w != nil {
			_ = w.Stop()
			cancel()
			go func(old jetstream.KeyWatcher) {
				for range old.Updates() { // unblock its delivery until it closes
				}
			}(w)
			w = nil
		}
	}
	defer stopWatch()
	// ahead holds the revisions backfill applied ahead of this watch, so
	// that the watch's older entries for those keys do not undo them.
	var ahead Ahead
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.Updates()
		}
		select {
		case <-r.stop:
			return
		case e, ok := <-updates:
			if !ok {
				r.bus.log.Warn("registry watch ended; watching again")
				cancel()
				w, ahead = nil, nil
				continue
			}
			if e == nil { // end of the initial values
				if loaded != nil {
					ahead = r.backfill()
					close(loaded)
					loaded = nil
				}
				continue
			}
			if ahead.Stale(e) {
				continue
			}
			r.apply(e)
		case <-t.C:
			r.mu.Lock()
			stale := r.lastPut.Sub(r.selfSeen) > 2*r.interval
			r.mu.Unlock()
			if w != nil && !stale {
				continue
			}
			if w != nil {
				r.bus.log.Warn("registry watch silent; watching again")
				stopWatch()
			}
			nw, ncancel, err := r.startWatch()
			if err != nil {
				r.bus.log.Warn("registry watch failed", "err", err)
				continue // next tick
			}
			w, cancel, ahead = nw, ncancel, nil // a new watch delivers every entry again, in order
			r.mu.Lock()
			r.selfSeen = time.Now() // give the new watch time to deliver
			r.mu.Unlock()
		}
	}
}

func (r *Registry) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		r.remove(e.Key())
		return
	}
	var info NodeInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		r.bus.log.Warn("bad registry entry", "key", e.Key(), "err", err)
		return
	}
	r.mu.Lock()
	if info.ID == r.self {
		r.selfSeen = time.Now()
	}
	old, existed := r.nodes[info.ID]
	r.nodes[info.ID] = &seenNode{info: info, seen: time.Now(), rev: e.Revision()}
	delete(r.left, info.ID)
	kind := NodeJoined
	if existed {
		kind = NodeUpdated
		if old.info.State == info.State && old.info.Sessions == info.Sessions && old.info.InFlight == info.InFlight &&
			slices.Equal(old.info.Routes, info.Routes) && old.info.TCP == info.TCP && old.info.WS == info.WS {
			kind = 0 // a refresh with nothing new: no event
		}
	}
	r.mu.Unlock()
	if kind != 0 {
		r.emit(RegistryEvent{Kind: kind, Node: info})
	}
}

// backfill applies the entries in the bucket that the first watch has not
// delivered although it says it has: the watch's end-of-initial-values
// marker counts messages, and an entry rewritten while the watch starts
// can arrive after it. Join promises the nodes already there, so read the
// bucket's keys from the stream and fetch each one not yet known. It runs
// on the watch goroutine and returns the revisions it applied.
func (r *Registry) backfill() Ahead {
	ctx, cancel := context.WithTimeout(context.Background(), initialLoadWait)
	defer cancel()
	go func() { // Leave waits for this goroutine: do not hold it up
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	known := func(key string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.nodes[key]
		return ok
	}
	ahead, err := r.bus.KVBackfill(ctx, r.kv, known, r.apply)
	if err != nil {
		r.bus.log.Warn("registry: list the cluster's nodes", "err", err)
	}
	return ahead
}

func (r *Registry) remove(id string) {
	r.mu.Lock()
	n, ok := r.nodes[id]
	delete(r.nodes, id)
	if ok {
		r.markLeft(id, leftNode{at: time.Now()})
	}
	r.mu.Unlock()
	if ok {
		r.emit(RegistryEvent{Kind: NodeLeft, Node: n.info})
	}
}

func (r *Registry) expire(now time.Time) {
	var gone []NodeInfo
	r.mu.Lock()
	for id, n := range r.nodes {
		// A node is never gone to itself: a busy one whose refreshes are
		// late must not drop its own rooms and bindings.
		if id != r.self && now.Sub(n.seen) > 3*r.interval {
			gone = append(gone, n.info)
			delete(r.nodes, id)
			r.markLeft(id, leftNode{at: now, rev: n.rev})
		}
	}
	r.mu.Unlock()
	for _, info := range gone {
		r.emit(RegistryEvent{Kind: NodeLeft, Node: info})
	}
}

func (r *Registry) emit(ev RegistryEvent) {
	r.mu.Lock()
	fns := make([]func(RegistryEvent), 0, len(r.watchers))
	for _, fn := range r.watchers {
		fns = append(fns, fn)
	}
	r.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// Watch calls fn for every join, update and leave until the returned
// cancel is called. fn runs on the registry's goroutine: keep it short.
func (r *Registry) Watch(fn func(RegistryEvent)) (cancel func()) {
	r.mu.Lock()
	id := r.nextW
	r.nextW++
	r.watchers[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.watchers, id)
		r.mu.Unlock()
	}
}

// Nodes returns the live nodes, sorted by id.
func (r *Registry) Nodes() []NodeInfo {
	r.mu.Lock()
	out := make([]NodeInfo, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, n.info)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b NodeInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Node returns one live node's entry.
func (r *Registry) Node(id string) (NodeInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[id]
	if !ok {
		return NodeInfo{}, false
	}
	return n.info, true
}

// Alive reports whether node id is in the registry.
func (r *Registry) Alive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.nodes[id]
	return ok
}

// Gone reports whether node id has left the cluster: its entry is out of
// the bucket (deleted, or expired as a dead node's does) and stays out for
// a TTL plus the time a live node needs to reconnect and refresh. When the
// NATS server was away for longer than the TTL, every entry expired; a live
// node's comes back, so the node is not gone.
func (r *Registry) Gone(ctx context.Context, id string) (bool, error) {
	ttl := 3 * r.interval
	window := ttl + 2*time.Second
	present := time.Now().Add(ttl + r.interval/2) // longest wait for a present entry to change
	var firstRev uint64
	var absentSince time.Time
	for {
		e, err := r.kv.Get(ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if absentSince.IsZero() {
				absentSince = time.Now()
			} else if time.Since(absentSince) > window {
				return true, nil
			}
		case err != nil:
			return false, err
		case !absentSince.IsZero():
			return false, nil // back: alive
		case firstRev == 0:
			firstRev = e.Revision()
		case e.Revision() != firstRev:
			return false, nil // refreshed: alive
		case time.Now().After(present):
			return false, nil // neither refreshed nor expired: do not guess
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(r.interval / 2):
		}
	}
}

// markLeft remembers that id left; r.mu is held. Old entries are dropped
// so that a cluster with churning node ids does not grow the map forever.
func (r *Registry) markLeft(id string, l leftNode) {
	r.left[id] = l
	if len(r.left) > 1024 {
		for k, o := range r.left {
			if l.at.Sub(o.at) > time.Hour {
				delete(r.left, k)
			}
		}
	}
}

// Dead reports whether node id, which this node's view has seen leave, is
// gone from the bucket too: its entry deleted or expired, or still the very
// entry that went silent. A newer revision means only this view missed the
// refreshes (its watch lagged): the node is alive. Unlike waiting for the
// bucket's TTL, this does not depend on the interval the bucket was
// created with.
func (r *Registry) Dead(ctx context.Context, id string) (bool, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, alive := r.nodes[id]; alive {
		return false, nil
	}
	l, ok := r.left[id]
	return ok && l.rev == e.Revision(), nil
}

// Deleted reports whether node id left by deleting its entry (it
// stopped), not by letting it go stale, and has not come back.
func (r *Registry) Deleted(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.left[id]
	return ok && l.rev == 0
}

// Left reports whether node id was seen leaving (and has not come back).
func (r *Registry) Left(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.left[id]
	return ok
}

// Leave stops refreshing and deletes this node's entry, so watchers see it
// leave at once rather than after the TTL.
func (r *Registry) Leave(ctx context.Context) {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	r.done.Wait()
	if err := r.kv.Delete(ctx, r.info().ID); err != nil {
		r.bus.log.Warn("registry leave failed", "err", err)
	}
}

// ListNodes reads the registry once, without joining it: for tools such as
// `hearth nodes`.
func ListNodes(ctx context.Context, b *Bus) ([]NodeInfo, error) {
	js, err := jetstream.New(b.jsc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, b.nodesBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	keys, err := b.KVKeys(ctx, kv)
	if err != nil {
		return nil, err
	}
	var out []NodeInfo
	for _, key := range keys {
		e, err := kv.Get(ctx, key)
		if err != nil {
			continue // left meanwhile
		}
		var info NodeInfo
		if json.Unmarshal(e.Value(), &info) == nil {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
