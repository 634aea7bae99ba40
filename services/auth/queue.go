package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/pb/authpb"
)

// The login queue admits logins at a fixed rate for the whole cluster. One
// auth instance — the holder of the "auth-queue" lease — runs it; the others
// ask it over the bus. Waiting sessions are also written to a KV bucket, so
// the instance that takes over after the leader dies resumes the same queue
// in the same order.
//
// A login that is not admitted at once is answered 204 with its place; the
// session then gets auth.queued pushes (position, estimated wait) whenever
// its place changes, at most once a second, and finally auth.admitted, after
// which the same login request is let through for admitTTL.
type queue struct {
	node  *hearth.Node
	log   *slog.Logger
	rate  float64 // guarded by mu: tests change it
	burst float64
	perIP int // most waiters from one address; <= 0: no cap
	self  string

	lease *hearth.Lease
	kv    hearth.KV

	mu       sync.Mutex
	leading  bool
	waiting  []waiter       // in admission order
	queued   map[string]int // waiters per client IP
	admitted map[string]time.Time
	tokens   float64
	last     time.Time
	nextSeq  uint64
	history  []time.Time // recent admissions, to measure the rate

	observe func(queueEvent) // tests watch the queue from the inside

	writes chan func() // KV writes, done off the admission loop; sent on and closed under mu only
}

// queueEvent is one thing the queue did: "enqueued", "position" (a push of
// Position and WaitMS), "admitted" or "refused" (MaxQueuedPerIP).
type queueEvent struct {
	Event    string
	Session  string
	Position uint32
	WaitMS   uint32
	At       time.Time
}

type waiter struct {
	Seq     uint64    `json:"seq"`
	Session string    `json:"session"`
	Gate    string    `json:"gate"`
	IP      string    `json:"ip"`
	Since   time.Time `json:"since"`
	pushed  uint32    // last position pushed
}

type admitReq struct {
	Session string `json:"session"`
	Gate    string `json:"gate"`
	IP      string `json:"ip"`
}

type admitResp struct {
	// Retry: the leader is still loading the queue; ask again shortly.
	Retry    bool `json:"retry,omitempty"`
	Admitted bool `json:"admitted"`
	// Refused: the client's address has MaxQueuedPerIP logins waiting.
	Refused  bool   `json:"refused,omitempty"`
	Position uint32 `json:"position,omitempty"`
	WaitMS   uint32 `json:"wait_ms,omitempty"`
}

const (
	admitTTL      = 30 * time.Second
	queueTick     = 10 * time.Millisecond
	positionEvery = time.Second
	rateWindow    = 5 * time.Second
)

func newQueue(ctx context.Context, node *hearth.Node, rate float64, burst, perIP int, log *slog.Logger, observe func(queueEvent)) (*queue, error) {
	q := &queue{node: node, log: log, rate: rate, burst: float64(burst), perIP: perIP, self: node.ID(),
		admitted: map[string]time.Time{}, queued: map[string]int{}, observe: observe}
	if q.burst < 1 {
		q.burst = max(1, rate)
	}
	kv, err := node.KV(ctx, "loginq", 0)
	if err != nil {
		return nil, err
	}
	q.kv = kv
	q.lease, err = node.Lease(ctx, "auth-queue", 3*time.Second, q.lead)
	if err != nil {
		return nil, err
	}
	q.lease.Serve(q.onAdmit)
	return q, nil
}

func (q *queue) stop() { q.lease.Stop() }

// admit asks the leader whether session may log in now. Until a leader is
// elected (at start, or for up to the lease TTL after the leader died) it
// retries within ctx.
func (q *queue) admit(ctx context.Context, session, gate, ip string) (admitResp, error) {
	req, _ := json.Marshal(admitReq{Session: session, Gate: gate, IP: ip})
	for {
		b, err := q.lease.Ask(ctx, req)
		if err != nil {
			return admitResp{}, fmt.Errorf("auth: login queue: %w", err)
		}
		var resp admitResp
		if err := json.Unmarshal(b, &resp); err != nil {
			return admitResp{}, fmt.Errorf("auth: bad queue answer: %w", err)
		}
		if !resp.Retry {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return admitResp{}, fmt.Errorf("auth: login queue still loading: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lead runs the queue while this node holds the lease.
func (q *queue) lead(ctx context.Context) {
	q.mu.Lock()
	rate := q.rate
	q.mu.Unlock()
	q.log.Info("login queue: leading", "rate", rate, "burst", q.burst)
	if err := q.load(ctx); err != nil {
		q.log.Warn("login queue: could not load the waiting list", "err", err)
	}
	defer q.startWriter()()
	q.mu.Lock()
	q.leading = true // from here on, admit requests are answered
	q.last = time.Now()
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.leading = false
		q.mu.Unlock()
		q.log.Info("login queue: no longer leading")
	}()
	tick := time.NewTicker(queueTick)
	defer tick.Stop()
	var lastPositions time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			q.advance(now)
			// New waiters hear their place at once; the others when it has
			// changed, once a second. One goroutine sends them all, so each
			// session sees its positions in order.
			all := now.Sub(lastPositions) >= positionEvery
			if all {
				lastPositions = now
			}
			q.pushPositions(now, all)
		}
	}
}

// load restores the waiting list a previous leader wrote.
func (q *queue) load(ctx context.Context) error {
	keys, err := q.kv.Keys(ctx)
	if err != nil {
		return err
	}
	var ws []waiter
	admitted := map[string]time.Time{}
	for _, key := range keys {
		e, err := q.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		if session, ok := strings.CutPrefix(key, admitPrefix); ok {
			var exp time.Time
			if json.Unmarshal(e.Value, &exp) == nil && time.Now().Before(exp) {
				admitted[session] = exp
			}
			continue
		}
		var w waiter
		if json.Unmarshal(e.Value, &w) == nil {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Seq < ws[j].Seq })
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting = ws
	q.admitted = admitted
	q.queued = map[string]int{}
	for _, w := range ws {
		q.queued[w.IP]++
	}
	// A fresh queue starts with its burst; one resumed after a leader died
	// starts empty, so those already waiting go first at the steady rate.
	q.tokens = q.burst
	if n := len(ws); n > 0 {
		q.tokens = 0
		q.nextSeq = ws[n-1].Seq
		q.log.Info("login queue: resumed", "waiting", n)
	}
	return nil
}

// KV keys: a waiter by its sequence number, and an admitted session.
func waiterKey(seq uint64) string { return fmt.Sprintf("w%020d", seq) }

const admitPrefix = "a."

// onAdmit answers one admit request, on the lease's serving goroutine.
func (q *queue) onAdmit(ctx context.Context, data []byte) []byte {
	var req admitReq
	if err := json.Unmarshal(data, &req); err != nil || req.Session == "" {
		q.log.Warn("login queue: bad admit request", "err", err)
		return nil
	}
	now := time.Now()
	q.mu.Lock()
	if !q.leading {
		q.mu.Unlock()
		b, _ := json.Marshal(admitResp{Retry: true})
		return b
	}
	q.refill(now)
	resp, enqueued := q.decide(req, now)
	q.mu.Unlock()
	if enqueued != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		val, _ := json.Marshal(enqueued)
		if _, err := q.kv.Put(ctx, waiterKey(enqueued.Seq), val); err != nil {
			q.log.Warn("login queue: not persisted", "err", err)
		}
		cancel()
	}
	b, _ := json.Marshal(resp)
	return b
}

// decide answers one admission request; q.mu is held.
func (q *queue) decide(req admitReq, now time.Time) (admitResp, *waiter) {
	if exp, ok := q.admitted[req.Session]; ok {
		delete(q.admitted, req.Session)
		go q.forgetKey(admitPrefix + req.Session)
		if now.Before(exp) {
			return admitResp{Admitted: true}, nil
		}
	}
	for i := range q.waiting {
		if q.waiting[i].Session == req.Session {
			pos := uint32(i + 1)
			return admitResp{Position: pos, WaitMS: q.estimate(pos, now)}, nil
		}
	}
	if len(q.waiting) == 0 && q.tokens >= 1 {
		q.tokens--
		q.history = append(q.history, now)
		return admitResp{Admitted: true}, nil
	}
	if q.perIP > 0 && q.queued[req.IP] >= q.perIP {
		if q.observe != nil {
			q.observe(queueEvent{Event: "refused", Session: req.Session, At: now})
		}
		return admitResp{Refused: true}, nil
	}
	q.nextSeq++
	w := waiter{Seq: q.nextSeq, Session: req.Session, Gate: req.Gate, IP: req.IP, Since: now}
	pos := uint32(len(q.waiting) + 1)
	q.waiting = append(q.waiting, w)
	q.queued[w.IP]++
	if q.observe != nil {
		q.observe(queueEvent{Event: "enqueued", Session: w.Session, Position: pos, At: now})
	}
	return admitResp{Position: pos, WaitMS: q.estimate(pos, now)}, &w
}

// left uncounts a waiter that left the queue; q.mu is held.
func (q *queue) left(w waiter) {
	if q.queued[w.IP]--; q.queued[w.IP] <= 0 {
		delete(q.queued, w.IP)
	}
}

// refill accrues tokens at the rate. The burst caps them only while nobody
// waits: with a queue, a late tick must not cost admissions, or the rate
// (and every estimate) would sag whenever the loop is delayed.
func (q *queue) refill(now time.Time) {
	limit := q.burst
	if n := float64(len(q.waiting)); n > limit {
		limit = n
	}
	q.tokens = min(limit, q.tokens+now.Sub(q.last).Seconds()*q.rate)
	q.last = now
}

// measuredRate is admissions per second over the last rateWindow, or the
// configured rate while there is too little history to measure.
func (q *queue) measuredRate(now time.Time) float64 {
	cut := 0
	for cut < len(q.history) && now.Sub(q.history[cut]) > rateWindow {
		cut++
	}
	q.history = q.history[cut:]
	if len(q.history) < 10 {
		return q.rate
	}
	span := now.Sub(q.history[0]).Seconds()
	if span < 1 {
		return q.rate
	}
	return float64(len(q.history)) / span
}

// estimate is the wait of the waiter at pos: the tokens it needs beyond
// those already accrued, at the measured rate.
func (q *queue) estimate(pos uint32, now time.Time) uint32 {
	r := q.measuredRate(now)
	if r <= 0 {
		return 0
	}
	need := float64(pos) - q.tokens
	if need <= 0 {
		return 0
	}
	return uint32(need / r * 1000)
}

// advance admits waiters as tokens accrue.
func (q *queue) advance(now time.Time) {
	var admitted []waiter
	q.mu.Lock()
	q.refill(now)
	for len(q.waiting) > 0 && q.tokens >= 1 {
		w := q.waiting[0]
		q.waiting = q.waiting[1:]
		q.left(w)
		q.tokens--
		q.history = append(q.history, now)
		q.admitted[w.Session] = now.Add(admitTTL)
		admitted = append(admitted, w)
	}
	var expired []string
	for s, exp := range q.admitted {
		if now.After(exp) {
			delete(q.admitted, s)
			expired = append(expired, s)
		}
	}
	q.mu.Unlock()
	for _, s := range expired {
		q.forgetKey(admitPrefix + s)
	}
	for _, w := range admitted {
		if w.pushed == 0 {
			// Admitted before its first position push: it still hears it.
			q.push(w.Gate, w.Session, "auth.queued", &authpb.Queued{Position: 1})
			if q.observe != nil {
				q.observe(queueEvent{Event: "position", Session: w.Session, Position: 1, At: now})
			}
		}
		if q.observe != nil {
			q.observe(queueEvent{Event: "admitted", Session: w.Session, At: now})
		}
		session, seq, exp := w.Session, w.Seq, now.Add(admitTTL)
		q.write(func() {
			q.persistAdmitted(session, exp) // so that a new leader honours it
			q.forget(seq)
		})
		q.push(w.Gate, w.Session, "auth.admitted", &authpb.Admitted{AdmitTtlMs: uint32(admitTTL.Milliseconds())})
	}
}

// pushPositions tells new waiters their place, and with all, every waiter
// whose place has changed.
func (q *queue) pushPositions(now time.Time, all bool) {
	type update struct {
		gate, session string
		msg           *authpb.Queued
	}
	var ups []update
	q.mu.Lock()
	for i := range q.waiting {
		pos := uint32(i + 1)
		if q.waiting[i].pushed == pos || (!all && q.waiting[i].pushed != 0) {
			continue
		}
		q.waiting[i].pushed = pos
		ups = append(ups, update{q.waiting[i].Gate, q.waiting[i].Session, &authpb.Queued{Position: pos, WaitMs: q.estimate(pos, now)}})
	}
	q.mu.Unlock()
	for _, u := range ups {
		if q.observe != nil {
			q.observe(queueEvent{Event: "position", Session: u.session, Position: u.msg.Position, WaitMS: u.msg.WaitMs, At: now})
		}
		q.push(u.gate, u.session, "auth.queued", u.msg)
	}
}

// sessionClosed drops the waiter or admission of a session that closed;
// it runs on the node's event goroutine, so the KV writes go to the writer.
func (q *queue) sessionClosed(session string) {
	var seq uint64
	admitted := false
	q.mu.Lock()
	if !q.leading {
		q.mu.Unlock()
		return
	}
	if _, ok := q.admitted[session]; ok {
		delete(q.admitted, session)
		admitted = true
	}
	for i := range q.waiting {
		if q.waiting[i].Session == session {
			seq = q.waiting[i].Seq
			q.left(q.waiting[i])
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			break
		}
	}
	q.mu.Unlock()
	if admitted {
		q.write(func() { q.forgetKey(admitPrefix + session) })
	}
	if seq != 0 {
		q.write(func() { q.forget(seq) })
	}
}

func (q *queue) push(gate, session, route string, msg proto.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := q.node.PushSession(ctx, gate, session, route, msg); err != nil {
		q.log.Debug("login queue: push", "route", route, "session", session, "err", err)
	}
}

func (q *queue) forget(seq uint64) { q.forgetKey(waiterKey(seq)) }

// startWriter starts the leader's KV writer: KV writes run on their own
// goroutine, so a slow bus never delays an admission (the waits the queue
// estimates are timed by the tick). stop ends it once the writes queued
// before it have run; later ones run on their callers.
func (q *queue) startWriter() (stop func()) {
	writes := make(chan func(), 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w := range writes {
			w()
		}
	}()
	q.mu.Lock()
	q.writes = writes
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		q.writes = nil
		close(writes) // under mu: write sends under it
		q.mu.Unlock()
		<-done
	}
}

// write runs fn on the leader's KV writer, or here when there is none or
// it is full. The send is made under q.mu, which the end of the lead holds
// as it takes the channel away: a send after its close would panic.
func (q *queue) write(fn func()) {
	q.mu.Lock()
	if q.writes != nil {
		select {
		case q.writes <- fn:
			q.mu.Unlock()
			return
		default:
		}
	}
	q.mu.Unlock()
	fn()
}

func (q *queue) forgetKey(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := q.kv.Delete(ctx, key, 0); err != nil {
		q.log.Debug("login queue: forget", "key", key, "err", err)
	}
}

func (q *queue) persistAdmitted(session string, exp time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	val, _ := json.Marshal(exp)
	if _, err := q.kv.Put(ctx, admitPrefix+session, val); err != nil {
		q.log.Warn("login queue: admission not persisted", "session", session, "err", err)
	}
}

// Waiting is the queue's length on the leader (0 elsewhere).
func (q *queue) length() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}
