package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type eventLog struct {
	mu  sync.Mutex
	evs []RegistryEvent
}

func (l *eventLog) add(ev RegistryEvent) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) has(kind RegistryEventKind, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.evs {
		if ev.Kind == kind && ev.Node.ID == id {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	eventuallyf(t, d, cond, func() string { return msg })
}

// eventuallyf is eventually whose message, made when it gives up, says
// what was there.
func eventuallyf(t *testing.T, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newRegistry(t *testing.T, b *Bus, id string, interval time.Duration, sessions *atomic.Int64) *Registry {
	t.Helper()
	r, err := NewRegistry(context.Background(), b, interval, func() NodeInfo {
		n := 0
		if sessions != nil {
			n = int(sessions.Load())
		}
		return NodeInfo{ID: id, Roles: []string{"gate"}, State: StateServing, TCP: "tcp://" + id + ":7100", Sessions: n}
	})
	require.NoError(t, err)
	return r
}

func TestRegistryJoinUpdateLeave(t *testing.T) {
	const interval = 100 * time.Millisecond
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	other := connect(t, Config{Name: "n2", URL: hub.ClientURL()})

	a := newRegistry(t, hub, "n1", interval, nil)
	var log eventLog
	a.Watch(log.add)
	require.NoError(t, a.Join(context.Background()))
	defer a.Leave(context.Background())

	var sessions atomic.Int64
	b := newRegistry(t, other, "n2", interval, &sessions)
	require.NoError(t, b.Join(context.Background()))

	eventually(t, 5*time.Second, func() bool { return log.has(NodeJoined, "n2") }, "n1 never saw n2 join")
	info, ok := a.Node("n2")
	require.True(t, ok)
	require.Equal(t, "tcp://n2:7100", info.TCP)
	require.True(t, info.HasRole("gate"))

	sessions.Store(5)
	eventually(t, 5*time.Second, func() bool { return log.has(NodeUpdated, "n2") }, "no update event for a load change")

	// A second node with the same id is refused while n2 is alive.
	dup := newRegistry(t, other, "n2", interval, nil)
	require.ErrorIs(t, dup.Join(context.Background()), ErrNodeIDTaken)

	// Graceful leave is seen at once.
	b.Leave(context.Background())
	eventually(t, 5*time.Second, func() bool { return log.has(NodeLeft, "n2") }, "no leave event after Leave")
	require.False(t, a.Alive("n2"))

	nodes, err := ListNodes(context.Background(), hub)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	require.Equal(t, "n1", nodes[0].ID)
}

// A node that dies without leaving disappears within three intervals, and
// its id can then be claimed again.
func TestRegistryExpiry(t *testing.T) {
	const interval = 100 * time.Millisecond
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	a := newRegistry(t, hub, "n1", interval, nil)
	var log eventLog
	a.Watch(log.add)
	require.NoError(t, a.Join(context.Background()))
	defer a.Leave(context.Background())

	dying := connect(t, Config{Name: "n3", URL: hub.ClientURL()})
	d := newRegistry(t, dying, "n3", interval, nil)
	require.NoError(t, d.Join(context.Background()))
	eventually(t, 5*time.Second, func() bool { return a.Alive("n3") }, "n3 never joined")
	// Stop refreshing without deleting: what a SIGKILL looks like.
	close(d.stop)
	d.done.Wait()
	start := time.Now()
	eventually(t, 5*time.Second, func() bool { return log.has(NodeLeft, "n3") }, "dead node never left")
	t.Logf("dead node left after %s", time.Since(start))
	require.True(t, a.Left("n3"))
	require.False(t, a.Left("n1"))

	again := newRegistry(t, dying, "n3", interval, nil)
	require.NoError(t, again.Join(context.Background()), "a dead node's id must be claimable again")
	eventually(t, 5*time.Second, func() bool { return a.Alive("n3") && !a.Left("n3") }, "rejoined node still counted as left")
	again.Leave(context.Background())
}

func TestPresence(t *testing.T) {
	const interval = 100 * time.Millisecond
	hub := connect(t, Config{Name: "hub"})
	reg := newRegistry(t, hub, "g1", interval, nil)
	require.NoError(t, reg.Join(context.Background()))
	defer reg.Leave(context.Background())
	eventually(t, 5*time.Second, func() bool { return reg.Alive("g1") }, "g1 not in its own registry")

	p, err := NewPresence(context.Background(), hub, reg)
	require.NoError(t, err)
	ctx := context.Background()

	_, err = p.Lookup(ctx, "alice")
	require.ErrorIs(t, err, ErrOffline)

	_, had, err := p.Claim(ctx, "alice", Where{Gate: "g1", Session: "s1"}, true)
	require.NoError(t, err)
	require.False(t, had)
	w, err := p.Lookup(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "s1", w.Session)

	// A policy that keeps the earlier session is refused, changing nothing.
	prev, had, err := p.Claim(ctx, "alice", Where{Gate: "g1", Session: "s2"}, false)
	require.ErrorIs(t, err, ErrTaken)
	require.True(t, had)
	require.Equal(t, "s1", prev.Session)
	w, err = p.Lookup(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "s1", w.Session)

	prev, had, err = p.Claim(ctx, "alice", Where{Gate: "g1", Session: "s2"}, true)
	require.NoError(t, err)
	require.True(t, had)
	require.Equal(t, "s1", prev.Session)

	// A resume of the replaced session does not take the entry back.
	require.NoError(t, p.Move(ctx, "alice", Where{Gate: "g2", Session: "s1"}))
	w, err = p.Lookup(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "s2", w.Session)
	require.NoError(t, p.Move(ctx, "alice", Where{Gate: "g1", Session: "s2", Codec: "json"}))
	w, err = p.Lookup(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "json", w.Codec, "a moved entry keeps the codec")

	// The old session closing does not erase the newer login.
	require.NoError(t, p.Clear(ctx, "alice", "s1"))
	w, err = p.Lookup(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "s2", w.Session)
	require.NoError(t, p.Clear(ctx, "alice", "s2"))
	_, err = p.Lookup(ctx, "alice")
	require.ErrorIs(t, err, ErrOffline)

	// Users on a gate that is not in the registry are offline, and purged.
	_, _, err = p.Claim(ctx, "bob@example.com", Where{Gate: "dead-gate", Session: "s9"}, true)
	require.NoError(t, err)
	_, err = p.Lookup(ctx, "bob@example.com")
	require.ErrorIs(t, err, ErrOffline)
	n, err := p.PurgeGate(ctx, "dead-gate")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestPresenceClaimRace races claims of one user from many writers: every
// writer but one learns it replaced (or, refused, lost to) another, so the
// sessions that survive — those not named as a replaced prev — are one.
func TestPresenceClaimRace(t *testing.T) {
	hub := connect(t, Config{Name: "hub"})
	reg := newRegistry(t, hub, "g1", 200*time.Millisecond, nil)
	require.NoError(t, reg.Join(context.Background()))
	defer reg.Leave(context.Background())
	eventually(t, 5*time.Second, func() bool { return reg.Alive("g1") }, "g1 not in its own registry")
	p, err := NewPresence(context.Background(), hub, reg)
	require.NoError(t, err)
	for round := range 20 {
		for _, replace := range []bool{true, false} {
			user := fmt.Sprintf("racer-%d-%v", round, replace)
			const writers = 8
			type result struct {
				prev Where
				had  bool
				err  error
			}
			results := make([]result, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					prev, had, err := p.Claim(context.Background(), user, Where{Gate: "g1", Session: fmt.Sprint("s", i)}, replace)
					results[i] = result{prev, had, err}
				}()
			}
			wg.Wait()
			alive := map[string]bool{}
			for i, r := range results {
				if r.err == nil {
					alive[fmt.Sprint("s", i)] = true
				} else {
					require.ErrorIs(t, r.err, ErrTaken)
				}
			}
			for _, r := range results {
				if r.err == nil && r.had {
					delete(alive, r.prev.Session) // kicked by its replacer
				}
			}
			require.Len(t, alive, 1, "round %d replace=%v: %v", round, replace, results)
			w, err := p.Lookup(context.Background(), user)
			require.NoError(t, err)
			require.True(t, alive[w.Session], "the entry names the survivor")
		}
	}
}

// Dead trusts the bucket's revision, not its TTL: a node that went silent
// is dead while its last entry still sits in a bucket created with a long
// TTL, and a node this view merely missed refreshes of is not.
func TestRegistryDead(t *testing.T) {
	const interval = 100 * time.Millisecond
	ctx := context.Background()
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	// The first registry creates the bucket: its TTL is 3 × 5 s.
	slow := newRegistry(t, hub, "n0", 5*time.Second, nil)
	require.NoError(t, slow.Join(ctx))
	defer slow.Leave(ctx)
	a := newRegistry(t, hub, "n1", interval, nil)
	require.NoError(t, a.Join(ctx))
	defer a.Leave(ctx)

	dying := connect(t, Config{Name: "n3", URL: hub.ClientURL()})
	d := newRegistry(t, dying, "n3", interval, nil)
	require.NoError(t, d.Join(ctx))
	live := newRegistry(t, dying, "n4", interval, nil)
	require.NoError(t, live.Join(ctx))
	defer live.Leave(ctx)
	eventually(t, 5*time.Second, func() bool { return a.Alive("n3") && a.Alive("n4") }, "n3 and n4 never joined")

	dead, err := a.Dead(ctx, "n3")
	require.NoError(t, err)
	require.False(t, dead, "a refreshing node reported dead")

	close(d.stop) // stop refreshing without deleting: a SIGKILL
	d.done.Wait()
	eventually(t, 5*time.Second, func() bool { return a.Left("n3") }, "n3 never left a's view")
	_, err = a.kv.Get(ctx, "n3")
	require.NoError(t, err, "the test needs n3's entry still in the bucket (its TTL is 15 s)")
	dead, err = a.Dead(ctx, "n3")
	require.NoError(t, err)
	require.True(t, dead, "a silent node's last entry is still the one seen: dead")

	// A view that lagged behind n4's refreshes: the bucket holds a newer
	// entry than the one it last saw, so n4 is alive.
	a.mu.Lock()
	delete(a.nodes, "n4")
	a.markLeft("n4", leftNode{at: time.Now(), rev: 1})
	a.mu.Unlock()
	dead, err = a.Dead(ctx, "n4")
	require.NoError(t, err)
	require.False(t, dead, "a node refreshing in the bucket reported dead")

	dead, err = a.Dead(ctx, "never-there")
	require.NoError(t, err)
	require.True(t, dead, "a node with no entry at all is gone")
}

// A node is never expired from its own view: one too busy to refresh in
// time must not drop its own rooms and bindings. Others' entries expire.
func TestRegistryNeverExpiresItself(t *testing.T) {
	const interval = 100 * time.Millisecond
	ctx := context.Background()
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	a := newRegistry(t, hub, "n1", interval, nil)
	require.NoError(t, a.Join(ctx))
	defer a.Leave(ctx)
	b := newRegistry(t, hub, "n2", interval, nil)
	require.NoError(t, b.Join(ctx))
	defer b.Leave(ctx)
	eventually(t, 5*time.Second, func() bool { return a.Alive("n1") && a.Alive("n2") }, "n1 and n2 never in a's view")
	a.expire(time.Now().Add(time.Hour)) // as if nothing had been seen for an hour
	require.True(t, a.Alive("n1"), "a node expired itself")
	require.False(t, a.Alive("n2"), "another node's stale entry did not expire")
}

// joinPeers joins n registries "peer-0"… on b; they leave when the test
// ends (Leave is idempotent).
func joinPeers(t *testing.T, b *Bus, n int, interval time.Duration) []*Registry {
	t.Helper()
	var peers []*Registry
	for i := range n {
		r := newRegistry(t, b, fmt.Sprintf("peer-%d", i), interval, nil)
		require.NoError(t, r.Join(context.Background()))
		t.Cleanup(func() { r.Leave(context.Background()) })
		peers = append(peers, r)
	}
	return peers
}

// backfill finds the entries a watch left out: here, all of them, as if
// the watch's end-of-initial-values marker had come first. A node that
// left (its key holds a delete marker) stays out.
func TestRegistryBackfillAppliesTheEntriesNotDelivered(t *testing.T) {
	const interval = 100 * time.Millisecond
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	peers := joinPeers(t, hub, 4, interval)
	peers[3].Leave(context.Background())

	r := newRegistry(t, hub, "late", interval, nil) // not joined: no watch
	var log eventLog
	r.Watch(log.add)
	applied := r.backfill()
	require.Len(t, applied, 3, "revisions of the three live peers")
	var ids []string
	for _, n := range r.Nodes() {
		ids = append(ids, n.ID)
	}
	require.Equal(t, []string{"peer-0", "peer-1", "peer-2"}, ids)
	for i := range 3 {
		require.True(t, log.has(NodeJoined, fmt.Sprintf("peer-%d", i)), "peer-%d's join event", i)
	}
	require.False(t, log.has(NodeJoined, "peer-3"), "a node that left is not backfilled")

	// Known nodes are not fetched again.
	require.Empty(t, r.backfill())
}

// Join returns with the nodes already registered known (and their events
// delivered): a gate starting next builds its route dictionary from them.
func TestRegistryJoinKnowsTheNodesAlreadyThere(t *testing.T) {
	const interval = 100 * time.Millisecond
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	peers := joinPeers(t, hub, 5, interval)

	for range 10 {
		late := connect(t, Config{Name: "late", URL: hub.ClientURL()})
		r := newRegistry(t, late, "late", interval, nil)
		var log eventLog
		r.Watch(log.add)
		require.NoError(t, r.Join(context.Background()))
		// No waiting: at Join's return.
		require.Len(t, r.Nodes(), 6, "the five peers and itself, known when Join returns")
		for i := range peers {
			require.True(t, log.has(NodeJoined, fmt.Sprintf("peer-%d", i)), "peer-%d's event delivered before Join returned", i)
		}
		r.Leave(context.Background())
		late.Close()
	}
}
