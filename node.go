package hearth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/internal/gate"
	"github.com/hearth-server/hearth/internal/hugepage"
	"github.com/hearth-server/hearth/wire"
)

// Errors of the node's lifecycle.
var (
	ErrRunning    = errors.New("hearth: node already running")
	ErrNotRunning = errors.New("hearth: node not running")
)

// Node is one hearth process's share of the cluster: a bus connection, a
// gate if it has that role, and the services registered on it.
type Node struct {
	cfg      Config
	id       string
	log      *slog.Logger
	metrics  *prometheus.Registry
	services map[string]*Service
	envs     cluster.EnvelopePool // of requests being handled (serve, local)
	tls      *tls.Config

	bus *cluster.Bus
	// gate is the node's gate once it has started; the workers read it
	// (handleGateInbox) as well as the admin and cluster paths.
	gate        atomic.Pointer[gate.Gate]
	admin       *http.Server
	subs        []*nats.Subscription
	runningSvcs []*Service // services whose OnStart ran
	reg         *cluster.Registry
	presence    *cluster.Presence

	state     atomic.Value // cluster.NodeState
	localOnly bool         // no other node can join: requests skip the bus
	resumed   resumed      // sessions resumed on another gate
	rooms     roomHost     // the room SDK's rooms, timers and registry view
	startedAt time.Time

	handlers   chan struct{} // semaphore of running handlers
	work       *workers      // the goroutines handlers run on
	sysPushes  atomic.Int32
	sysStreams sysStreams

	running  atomic.Bool
	started  chan struct{} // start finished, well or not
	ready    chan struct{}
	stopOnce sync.Once
	stop     chan struct{} // Shutdown called
	done     chan struct{} // shutdown finished
	baseCtx  context.Context
	cancel   context.CancelFunc
	// reqCtxs are baseCtx's children that requests' contexts derive from,
	// picked at random: a context with a deadline registers with its
	// parent under the parent's lock, and with one parent every request of
	// the node queued on that lock under load (94 handlers at once in a
	// 20,000-bot run). Set in Run, read-only after.
	reqCtxs [16]context.Context
	bg      sync.WaitGroup // handler goroutines
	// hugeDone is closed when the huge page collapser (Config.HugePages)
	// has stopped; nil when none runs. Written before started closes.
	hugeDone chan struct{}
	// sweepDone is closed when the KV marker sweeper (startCluster) has
	// stopped; nil when none runs. Written before started closes.
	sweepDone chan struct{}

	mu        sync.Mutex
	addrs     map[string]net.Addr
	shutErr   error
	isServing atomic.Bool
}

// New validates cfg and returns a node ready to have services registered.
// It opens nothing until Run.
func New(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.NodeID = "node-" + hex.EncodeToString(b[:])
	}
	if err := cluster.ValidateNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("hearth: node id %q: %w", cfg.NodeID, err)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&cfg.TCPAddr, ":7100")
	def(&cfg.WSAddr, ":7101")
	def(&cfg.AdminAddr, "127.0.0.1:7180")
	if err := checkAdmin(cfg.AdminAddr, cfg.AdminToken); err != nil {
		return nil, err
	}
	def(&cfg.DataDir, "./data")
	if cfg.MaxHandlers <= 0 {
		cfg.MaxHandlers = 10_000
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		cfg:      cfg,
		id:       cfg.NodeID,
		log:      cfg.Logger.With("node", cfg.NodeID),
		metrics:  prometheus.NewRegistry(),
		services: map[string]*Service{},
		handlers: make(chan struct{}, cfg.MaxHandlers),
		started:  make(chan struct{}),
		ready:    make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		addrs:    map[string]net.Addr{},
	}
	n.work = newWorkers(n.done)
	n.state.Store(cluster.StateStarting)
	n.tls = cfg.TLS
	if n.tls == nil && (cfg.TLSCertFile != "" || cfg.TLSKeyFile != "") {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("hearth: load TLS key pair (Config.TLSCertFile %q, Config.TLSKeyFile %q): %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		n.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	// Besides the defaults, how long goroutines waited for a CPU once
	// runnable (go_sched_latencies_seconds): a node short of CPU shows
	// there before its timers and answers come late; and what a
	// collection has to scan and what its marking cost the node's own
	// goroutines in assists (go_gc_scan_*, go_cpu_classes_gc_*): a node
	// whose answers stall on its collections shows it there.
	n.metrics.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: extraRuntimeMetrics})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_workers_idle",
			Help: "Goroutines of the node's worker pool waiting for a task (at most 1024): shared by every session, not one's own.",
		}, func() float64 { return float64(n.work.idle()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_huge_page_bytes",
			Help: "The process's anonymous memory on 2 MiB pages (AnonHugePages; Config.HugePages).",
		}, func() float64 {
			u, _ := hugepage.ReadUsage()
			return float64(u.Huge)
		}))
	if err := n.Register(n.sysService()); err != nil {
		return nil, err
	}
	return n, nil
}

var extraRuntimeMetrics = regexp.MustCompile(`^/sched/latencies:seconds$|^/gc/scan/|^/cpu/classes/gc/`)

// ID is the node's id.
func (n *Node) ID() string { return n.id }

// Register adds services to the node. It must be called before Run. A
// service whose name is not in Config.Roles (when set) is not started.
func (n *Node) Register(svcs ...*Service) error {
	if n.running.Load() {
		return ErrRunning
	}
	for _, svc := range svcs {
		if _, dup := n.services[svc.name]; dup {
			return fmt.Errorf("hearth: service %q registered twice", svc.name)
		}
		n.services[svc.name] = svc
	}
	return nil
}

// hasRole reports whether the node runs role ("gate" or a service name).
func (n *Node) hasRole(role string) bool {
	return len(n.cfg.Roles) == 0 || slices.Contains(n.cfg.Roles, role)
}

// Routes lists every route of the services this node runs, sorted.
func (n *Node) Routes() []string {
	var r []string
	for name, svc := range n.services {
		if n.hasRole(name) {
			r = append(r, svc.Routes()...)
		}
	}
	slices.Sort(r)
	return r
}

// Ready is closed once the node serves: listeners bound, services subscribed.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Addr returns the bound address of "tcp", "ws" or "admin", or nil.
func (n *Node) Addr(name string) net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs[name]
}

// NATSURL is where other nodes can reach this node's embedded NATS server
// when it listens (Config.NATSListen), or "".
func (n *Node) NATSURL() string {
	if n.bus == nil {
		return ""
	}
	return n.bus.ClientURL()
}

// Run starts the node and serves until ctx ends or Shutdown is called. When
// ctx ends, Run shuts down gracefully within Config.ShutdownTimeout.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	n.baseCtx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var cancels [len(n.reqCtxs)]context.CancelFunc
	for i := range n.reqCtxs {
		n.reqCtxs[i], cancels[i] = context.WithCancel(n.baseCtx)
	}
	cancelBase := n.cancel
	n.cancel = func() {
		cancelBase()
		for _, c := range cancels {
			c()
		}
	}
	err := n.start()
	if err == nil && n.cfg.HugePages && hugepage.Mode() == "madvise" {
		n.hugeDone = make(chan struct{})
		go func() {
			defer close(n.hugeDone)
			(&hugepage.Collapser{Log: n.log}).Run(n.baseCtx)
		}()
	}
	close(n.started)
	if err != nil {
		n.stopOnce.Do(func() { close(n.stop) })
		n.shutErr = n.teardown(context.Background())
		close(n.done)
		return err
	}
	n.isServing.Store(true)
	close(n.ready)
	n.log.Info("node serving", "roles", n.roleList())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), n.cfg.DrainTimeout+n.cfg.ShutdownTimeout)
		defer cancel()
		return n.Shutdown(sctx)
	case <-n.stop:
		<-n.done
		return nil
	}
}

// Shutdown stops the node gracefully: the gate stops accepting and sends
// every session KICK 8 after its pending output, services finish the
// requests they hold, then the bus closes. When ctx ends first, what is left
// is closed at once and ctx's error returned.
func (n *Node) Shutdown(ctx context.Context) error {
	if !n.running.Load() {
		return ErrNotRunning
	}
	<-n.started
	first := false
	n.stopOnce.Do(func() { first = true; close(n.stop) })
	if !first {
		select {
		case <-n.done:
			return n.shutErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.shutErr = n.teardown(ctx)
	close(n.done)
	return n.shutErr
}

func (n *Node) roleList() []string {
	var r []string
	services := 0 // where the service names start: after "gate", if any
	if n.hasRole("gate") {
		r = append(r, "gate")
		services = 1
	}
	for name := range n.services {
		if n.hasRole(name) {
			r = append(r, name)
		}
	}
	slices.Sort(r[services:])
	return r
}

func (n *Node) start() error {
	for _, r := range n.cfg.Roles {
		if _, ok := n.services[r]; !ok && r != "gate" {
			known := []string{"gate"}
			for name := range n.services {
				known = append(known, name)
			}
			slices.Sort(known[1:])
			return fmt.Errorf("hearth: unknown role %q; this binary knows %s", r, strings.Join(known, ", "))
		}
	}
	var err error
	n.bus, err = cluster.Connect(n.baseCtx, cluster.Config{
		URL:        n.cfg.NATSURL,
		DataDir:    filepath.Join(n.cfg.DataDir, "nats"),
		Listen:     n.cfg.NATSListen,
		Prefix:     n.cfg.Prefix,
		Name:       n.id,
		Logger:     n.log,
		Options:    n.natsOptions(),
		Publishers: n.cfg.NATSPublishers,
	})
	if err != nil {
		return err
	}
	if u := n.bus.ClientURL(); u != "" {
		n.log.Info("embedded NATS listening", "url", u)
	}
	n.startedAt = time.Now().UTC()
	n.localOnly = n.cfg.NATSURL == "" && n.cfg.NATSListen == ""
	// Claim the node id before serving anything, so a duplicate node never
	// takes requests meant for the live one.
	if err := n.startCluster(); err != nil {
		return err
	}
	if err := n.startServices(); err != nil {
		return err
	}
	if err := n.subscribeEvents(); err != nil {
		return err
	}
	if n.hasRole("gate") {
		if err := n.startGate(); err != nil {
			return err
		}
	}
	if n.cfg.AdminAddr != Off {
		if err := n.startAdmin(); err != nil {
			return err
		}
	}
	if err := n.bus.Flush(5 * time.Second); err != nil {
		return err
	}
	n.setState(cluster.StateServing)
	return nil
}

// publicRoute is the gate's authentication rule: nil (everything open)
// unless Config.RequireUser is set.
func (n *Node) publicRoute() func(string) bool {
	if !n.cfg.RequireUser {
		return nil
	}
	public := n.cfg.PublicServices
	if len(public) == 0 {
		public = []string{"sys", "auth"}
	}
	return func(route string) bool {
		svc, _ := wire.SplitRoute(route)
		return slices.Contains(public, svc)
	}
}

// natsOptions maps the Config's NATS security settings to nats.go options.
func (n *Node) natsOptions() []nats.Option {
	var o []nats.Option
	if n.cfg.NATSCredsFile != "" {
		o = append(o, nats.UserCredentials(n.cfg.NATSCredsFile))
	}
	if n.cfg.NATSCAFile != "" {
		o = append(o, nats.RootCAs(n.cfg.NATSCAFile))
	}
	if n.cfg.NATSCertFile != "" || n.cfg.NATSKeyFile != "" {
		o = append(o, nats.ClientCert(n.cfg.NATSCertFile, n.cfg.NATSKeyFile))
	}
	return o
}

func (n *Node) startGate() error {
	addr := func(a string) string {
		if a == Off {
			return ""
		}
		return a
	}
	g, err := gate.New(n.bus, gate.Config{
		ID:        n.id,
		TCPAddr:   addr(n.cfg.TCPAddr),
		WSAddr:    addr(n.cfg.WSAddr),
		TLS:       n.tls,
		Routes:    n.clusterRoutes,
		Public:    n.publicRoute(),
		OnClose:   n.onSessionClosed,
		NodeAlive: n.nodeAlive,
		Limits:    n.cfg.Limits.gate(),
		OnResume:  n.onSessionResumed,
		Local:     n.local,
		Logger:    n.log,
		Metrics:   gate.NewMetrics(n.metrics),
		Go:        n.work.run,
	})
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	n.gate.Store(g)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, name := range []string{"tcp", "ws"} {
		if a := g.Addr(name); a != nil {
			n.addrs[name] = a
		}
	}
	return nil
}

// startServices subscribes each service this node runs to its queue
// subject and to its node-bound subject.
func (n *Node) startServices() error {
	nc := n.bus.Conn()
	subj := n.bus.Subjects()
	for name, svc := range n.services {
		if !n.hasRole(name) {
			continue
		}
		for _, fn := range svc.onStart {
			if err := fn(n.baseCtx, n); err != nil {
				return fmt.Errorf("hearth: start service %s: %w", name, err)
			}
		}
		n.runningSvcs = append(n.runningSvcs, svc)
		h := n.dispatch(svc)
		qs, err := nc.QueueSubscribe(subj.Service(name), name, h)
		if err != nil {
			return fmt.Errorf("hearth: subscribe service %s: %w", name, err)
		}
		ns, err := nc.Subscribe(subj.NodeService(n.id, name), h)
		if err != nil {
			return fmt.Errorf("hearth: subscribe service %s: %w", name, err)
		}
		for _, sub := range []*nats.Subscription{qs, ns} {
			_ = sub.SetPendingLimits(-1, 256<<20)
			n.subs = append(n.subs, sub)
		}
	}
	return nil
}

// subscribeEvents follows session events: to keep Session methods pointed
// at sessions that moved, and for the services that want them.
func (n *Node) subscribeEvents() error {
	var fns []func(context.Context, SessionEvent)
	for _, svc := range n.runningSvcs {
		fns = append(fns, svc.onEvent...)
	}
	if len(n.runningSvcs) == 0 {
		return nil
	}
	sub, err := n.bus.Conn().Subscribe(n.bus.Subjects().Events(), func(m *nats.Msg) {
		var e cluster.Envelope
		if e.Decode(m.Data) != nil || e.Type != cluster.TypeEvent {
			return
		}
		n.trackSession(cluster.EventKind(e.Status), e.Session, e.Gate)
		if len(fns) == 0 {
			return
		}
		ev := SessionEvent{Kind: cluster.EventKind(e.Status).String(), Session: e.Session, User: e.User, Gate: e.Gate}
		for _, fn := range fns {
			fn(n.baseCtx, ev)
		}
	})
	if err != nil {
		return fmt.Errorf("hearth: subscribe session events: %w", err)
	}
	n.subs = append(n.subs, sub)
	return nil
}

func (n *Node) teardown(ctx context.Context) error {
	n.isServing.Store(false)
	var errs []error
	if n.reg != nil {
		n.setState(cluster.StateDraining)
	}
	// Rooms end while their players are still connected and subscribed.
	n.rooms.drain(ctx)
	if g := n.gate.Load(); g != nil {
		n.drainGate(ctx)
		if err := g.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("gate shutdown: %w", err))
		}
	}
	for _, sub := range n.subs {
		_ = sub.Unsubscribe()
	}
	// Let running handlers finish (their responses go to gates elsewhere).
	wait := make(chan struct{})
	go func() { n.bg.Wait(); close(wait) }()
	select {
	case <-wait:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("handlers still running: %w", ctx.Err()))
	}
	for _, svc := range n.runningSvcs {
		for _, fn := range svc.onStop {
			fn(ctx)
		}
	}
	if n.reg != nil {
		lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.reg.Leave(lctx)
		cancel()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.hugeDone != nil {
		select { // a pass ends within its kernel calls
		case <-n.hugeDone:
		case <-ctx.Done():
		}
	}
	if n.sweepDone != nil {
		select { // a sweep's requests end with baseCtx
		case <-n.sweepDone:
		case <-ctx.Done():
		}
	}
	if n.bus != nil {
		n.bus.Close()
	}
	if n.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = n.admin.Shutdown(sctx)
		cancel()
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// dispatch returns the bus handler of a service: each request runs on a
// handler goroutine of its own (n.work), up to Config.MaxHandlers at once
// across the node.
func (n *Node) dispatch(svc *Service) nats.MsgHandler {
	return func(m *nats.Msg) {
		select {
		case n.handlers <- struct{}{}:
		default:
			n.refuse(svc.name, func(status Code, payload []byte) { n.reply(m.Reply, 0, status, payload) })
			return
		}
		n.bg.Add(1)
		n.work.run(func() {
			defer func() { <-n.handlers; n.bg.Done() }()
			n.serve(svc, m)
		})
	}
}

// refuse answers a request that found every handler slot taken with 203;
// a NOTIFY (reply nil) is dropped. Both are logged.
func (n *Node) refuse(service string, reply replier) {
	n.log.Warn("overloaded: request refused", "service", service, "max_handlers", n.cfg.MaxHandlers)
	if reply != nil {
		reply(wire.CodeOverloaded, []byte("overloaded: too many requests running"))
	}
}

// replier sends a handler's answer to the gate; nil for a NOTIFY.
type replier func(status Code, payload []byte)

// serve runs one request from the bus and publishes its response to the
// gate's reply subject.
func (n *Node) serve(svc *Service, m *nats.Msg) {
	// Reused once the request is handled: handle keeps nothing of it (its
	// payload, which a handler may keep, is not the envelope's to reuse).
	env := n.envs.Get()
	defer n.envs.Put(env)
	if err := env.Decode(m.Data); err != nil || env.Type != cluster.TypeRequest {
		n.log.Error("bad request envelope", "subject", m.Subject, "err", err)
		n.reply(m.Reply, 0, wire.CodeInternal, []byte("internal error"))
		return
	}
	var reply replier
	if subject, seq := m.Reply, env.Seq; subject != "" {
		reply = func(status Code, payload []byte) { n.reply(subject, seq, status, payload) }
	}
	n.handle(svc, env, reply)
}

// handle runs one request and answers it with reply.
func (n *Node) handle(svc *Service, env *cluster.Envelope, reply replier) {
	now := time.Now()
	if env.Deadline != 0 && now.UnixNano() >= env.Deadline {
		return // the gate has answered 302 already
	}
	_, method := wire.SplitRoute(env.Route)
	h, ok := svc.handlers[method]
	if !ok {
		if reply != nil {
			reply(wire.CodeUnknownRoute, []byte("unknown route "+env.Route))
		}
		return
	}
	s := &Session{node: n, id: env.Session, gate: env.Gate, user: env.User, addr: env.Addr, codec: env.Codec, bindings: env.Bindings}
	ctx := n.reqCtxs[mrand.N(len(n.reqCtxs))]
	var cancel context.CancelFunc = func() {}
	var own int64
	switch {
	case env.Deadline == 0:
	case h.ownDeadline:
		own = env.Deadline
	default:
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, env.Deadline))
	}
	defer cancel()
	rc := &requestContext{Context: ctx, base: n.log, trace: env.Trace, session: env.Session, user: env.User, route: env.Route, deadline: own, pooled: h.pooled}
	if !h.notify {
		rc.reply = reply
	}
	payload, err := n.call(rc, h, s, env)
	if h.pooled {
		defer releaseAnswer(payload) // reply copies it into the answer's envelope
	}
	defer s.runAfter()
	if rc.reply == nil {
		if err != nil {
			rc.log().Warn("notify handler failed", "err", err)
		}
		return
	}
	if rc.claimAnswer(answerHandler) { // else a room has answered it
		rc.respond(payload, err)
	}
}

// local runs a request from this node's gate on this node's own instance
// of the service, without sending it over the bus, where the bus would
// bring it here anyway: on a node that no other node can join (embedded
// NATS, not listening), and in a cluster for a session bound to this node
// for the service (a seat at one of its rooms). It changes nothing but the
// cost of two bus crossings per request. An unbound request in a cluster
// still goes to the service's queue group, which spreads the load.
func (n *Node) local(service string, id uint64, env *cluster.Envelope) bool {
	if !n.localOnly {
		if node, bound := env.Binding(service); !bound || node != n.id {
			return false
		}
	}
	svc, ok := n.services[service]
	if !ok || !n.hasRole(service) {
		return false
	}
	var reply replier
	if id != 0 {
		// The answer takes the path of everything else this node sends its
		// gate (in-process, cluster.Bus.SetLocalGate): behind the pushes,
		// binds and joins the handler made, so the gate applies those
		// first.
		subject := string(cluster.AppendReplyID([]byte(n.bus.Subjects().GateReplyPrefix(n.id)), id))
		seq := env.Seq
		reply = func(status Code, payload []byte) { n.reply(subject, seq, status, payload) }
	}
	select {
	case n.handlers <- struct{}{}:
	default:
		// Refused here, as the bus path would: sent over the bus instead,
		// the request could find a slot there and run after a later one
		// of the same session that ran here.
		n.refuse(service, reply)
		return true
	}
	// env is the gate's, reused once this returns.
	e := n.envs.Get()
	*e = *env
	e.Payload = bytes.Clone(env.Payload) // the gate's read buffer; a handler may keep it
	n.bg.Add(1)
	n.work.run(func() {
		defer func() { <-n.handlers; n.bg.Done() }()
		n.handle(svc, e, reply)
		n.envs.Put(e)
		n.handleGateInbox()
	})
	return true
}

// handleGateInbox has this node's gate handle, on the calling goroutine,
// what a task just sent it in-process (gate.Gate.HandleInbox): a handler's
// or a room's answers and pushes then go out in its turn for a core rather
// than the gate goroutine's next one.
func (n *Node) handleGateInbox() {
	if g := n.gate.Load(); g != nil {
		g.HandleInbox()
	}
}

// call runs a handler, turning a panic into an internal error.
func (n *Node) call(ctx *requestContext, h handler, s *Session, env *cluster.Envelope) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			ctx.log().Error("handler panicked", "panic", r)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return h.fn(ctx, s, env.Codec, env.Payload)
}

func (n *Node) reply(subject string, seq uint32, status Code, payload []byte) {
	if subject == "" {
		return
	}
	err := n.bus.Send(subject, &cluster.Envelope{Type: cluster.TypeResponse, Seq: seq, Status: uint16(status), Payload: payload})
	if err != nil {
		n.log.Warn("response not sent", "err", err)
	}
}

// Publish pushes msg on route to every member of channel (see
// Session.Join), on every gate. It costs one bus message per publish,
// fanned out by each gate; msg is encoded once per codec.
func (n *Node) Publish(ctx context.Context, channel, route string, msg any) error {
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	if err := checkChannel(channel); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pb, js, err := encodeBoth(msg)
	if err != nil {
		return err
	}
	if n.bus == nil {
		return ErrNotRunning
	}
	return n.bus.Publish(channel, route, pb, js)
}

// Broadcast pushes msg on route to every session on every gate.
func (n *Node) Broadcast(ctx context.Context, route string, msg any) error {
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pb, js, err := encodeBoth(msg)
	if err != nil {
		return err
	}
	if n.bus == nil {
		return ErrNotRunning
	}
	return n.bus.Broadcast(route, pb, js)
}

// Kick closes a session on any gate with a code and reason.
// Like PushSession, it follows a session resumed on another gate.
func (n *Node) Kick(ctx context.Context, gateID, sessionID string, code Code, reason string) error {
	if n.bus == nil {
		return ErrNotRunning
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if g, ok := n.resumedAt(sessionID); ok {
		gateID = g
	}
	return n.bus.Kick(gateID, sessionID, uint16(code), reason)
}

func errBadRoute(route string) error {
	return fmt.Errorf("hearth: route %q must match ^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,31}$", route)
}
