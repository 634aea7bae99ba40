package hearth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// Version is the hearth version nodes publish in the registry.
const Version = "0.1.0"

// ErrOffline is returned by Push for a user with no live session.
var ErrOffline = cluster.ErrOffline

// startCluster joins the registry (refusing a node id that a live node
// holds) and opens presence.
func (n *Node) startCluster() error {
	ctx, cancel := context.WithTimeout(n.baseCtx, 15*time.Second)
	defer cancel()
	reg, err := cluster.NewRegistry(ctx, n.bus, n.cfg.RegistryInterval, n.nodeInfo)
	if err != nil {
		return err
	}
	n.reg = reg
	n.presence, err = cluster.NewPresence(ctx, n.bus, reg)
	if err != nil {
		return err
	}
	reg.Watch(n.onRegistryEvent)
	if err := reg.Join(ctx); err != nil {
		n.reg = nil // never joined: nothing to leave
		return err
	}
	n.sweepDone = make(chan struct{})
	go func() {
		defer close(n.sweepDone)
		n.bus.RunSweeper(n.baseCtx, markerSweepEvery, markerAge)
	}()
	return nil
}

// A deleted KV key leaves a marker in its bucket; the node sweeps those of
// the buckets it opened without a TTL (presence, the room registry, a
// service's Node.KV buckets) every markerSweepEvery, once markerAge old:
// long after every watch has delivered them (cluster.RunSweeper).
const (
	markerSweepEvery = 10 * time.Minute
	markerAge        = 10 * time.Minute
)

// nodeInfo is this node's registry entry.
func (n *Node) nodeInfo() cluster.NodeInfo {
	info := cluster.NodeInfo{
		ID:      n.id,
		Roles:   n.roleList(),
		Version: Version,
		State:   n.state.Load().(cluster.NodeState),
		Routes:  n.Routes(),
		Started: n.startedAt,
	}
	if a := n.Addr("admin"); a != nil {
		info.Admin = "http://" + n.advertised(a)
	}
	if g := n.gate.Load(); g != nil {
		scheme := "tcp"
		wsScheme := "ws"
		if n.tls != nil {
			scheme, wsScheme = "tls", "wss"
		}
		if a := g.Addr("tcp"); a != nil {
			info.TCP = scheme + "://" + n.advertised(a)
		}
		if a := g.Addr("ws"); a != nil {
			info.WS = wsScheme + "://" + n.advertised(a) + "/ws"
		}
		info.Sessions = g.Sessions()
		info.InFlight = g.InFlight()
	}
	return info
}

// advertised turns a bound address into one clients can dial.
func (n *Node) advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	switch {
	case n.cfg.Advertise != "":
		host = n.cfg.Advertise
	case net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified():
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

func (n *Node) setState(s cluster.NodeState) {
	n.state.Store(s)
	if n.reg != nil {
		n.reg.Refresh()
	}
}

func (n *Node) onRegistryEvent(ev cluster.RegistryEvent) {
	if ev.Node.ID == n.id {
		return
	}
	n.log.Info("cluster node "+ev.Kind.String(), "peer", ev.Node.ID, "roles", ev.Node.Roles, "state", ev.Node.State)
	if g := n.gate.Load(); g != nil {
		g.RefreshRoutes()
	}
	if ev.Kind == cluster.NodeLeft && ev.Node.HasRole("gate") && n.isJanitor() {
		// The gate is gone; its users are already offline to lookups. Clear
		// their entries so the bucket does not grow with dead sessions.
		go func(gate string) {
			ctx, cancel := context.WithTimeout(n.baseCtx, time.Minute)
			defer cancel()
			// Only a gate gone from the bucket: one that left this node's
			// view because this node lost the bus holds live sessions.
			if gone, err := n.reg.Gone(ctx, gate); !gone {
				n.log.Info("presence kept: the gate is not gone from the registry", "gate", gate, "err", err)
				return
			}
			purged, err := n.presence.PurgeGate(ctx, gate)
			if err != nil {
				n.log.Warn("presence purge failed", "gate", gate, "err", err)
				return
			}
			n.log.Info("presence purged", "gate", gate, "users", purged)
		}(ev.Node.ID)
	}
}

// isJanitor picks one node, the lowest id alive, for cluster-wide clean-up.
func (n *Node) isJanitor() bool {
	for _, peer := range n.reg.Nodes() {
		if peer.ID < n.id {
			return false
		}
	}
	return true
}

// clusterRoutes is the route dictionary for the gate: every route served by
// any live node.
func (n *Node) clusterRoutes() []string {
	r := n.Routes()
	if n.reg != nil {
		for _, peer := range n.reg.Nodes() {
			r = append(r, peer.Routes...)
		}
	}
	slices.Sort(r)
	return slices.Compact(r)
}

// nodeAlive is the gate's check before routing to a bound node: only a
// node that deleted its registry entry (it stopped) is refused at once. A
// node whose entry merely went stale may be too busy to refresh it: its
// requests go on, and if it is really gone the bus answers that nobody
// listens (a killed process) or the request times out (a vanished host),
// while its rooms' players are told by the registry's reaper.
func (n *Node) nodeAlive(id string) bool {
	return id == n.id || n.reg == nil || !n.reg.Deleted(id)
}

// NodeInfo is what a node publishes about itself in the cluster's registry.
type NodeInfo struct {
	ID      string   `json:"id"`
	Roles   []string `json:"roles"`
	Version string   `json:"version"`
	// State is "starting", "serving" or "draining".
	State string `json:"state"`
	// TCP and WS are the gate's client endpoints as clients should dial
	// them ("tcp://host:7100", "ws://host:7101/ws"); empty without a gate.
	TCP   string `json:"tcp,omitempty"`
	WS    string `json:"ws,omitempty"`
	Admin string `json:"admin,omitempty"`
	// Sessions and InFlight are the gate's load: connected sessions and
	// requests awaiting an answer.
	Sessions int `json:"sessions"`
	InFlight int `json:"in_flight"`
	// Routes the node's services serve.
	Routes  []string  `json:"routes,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// HasRole reports whether the node runs role ("gate" or a service name).
func (i NodeInfo) HasRole(role string) bool { return slices.Contains(i.Roles, role) }

func nodeInfoFrom(c cluster.NodeInfo) NodeInfo {
	return NodeInfo{
		ID: c.ID, Roles: c.Roles, Version: c.Version, State: string(c.State),
		TCP: c.TCP, WS: c.WS, Admin: c.Admin, Sessions: c.Sessions, InFlight: c.InFlight,
		Routes: c.Routes, Started: c.Started, Updated: c.Updated,
	}
}

// Nodes returns the live nodes of the cluster, this one included.
func (n *Node) Nodes() []NodeInfo {
	if n.reg == nil {
		return nil
	}
	var out []NodeInfo
	for _, c := range n.reg.Nodes() {
		out = append(out, nodeInfoFrom(c))
	}
	return out
}

// Gates returns the live gates with client endpoints, least loaded first.
func (n *Node) Gates() []NodeInfo {
	var gates []NodeInfo
	for _, info := range n.Nodes() {
		if info.HasRole("gate") && info.State == string(cluster.StateServing) && (info.TCP != "" || info.WS != "") {
			gates = append(gates, info)
		}
	}
	slices.SortStableFunc(gates, func(a, b NodeInfo) int { return a.Sessions - b.Sessions })
	return gates
}

func (n *Node) gatesResp() *syspb.GatesResp {
	resp := &syspb.GatesResp{}
	for _, g := range n.Gates() {
		resp.Gates = append(resp.Gates, &syspb.GateInfo{Id: g.ID, Tcp: g.TCP, Ws: g.WS, Sessions: uint32(g.Sessions)})
	}
	return resp
}

// Push sends msg on route to user's session, on whichever gate holds it,
// found with one presence lookup. It returns an error wrapping ErrOffline
// when the user has no live session. msg is encoded as Session.Push does.
func (n *Node) Push(ctx context.Context, user, route string, msg any) error {
	if n.presence == nil {
		return ErrNotRunning
	}
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	w, err := n.presence.Lookup(ctx, user)
	if err != nil {
		return fmt.Errorf("hearth: push to %q: %w", user, err)
	}
	pb, js, err := n.encodeFor(w.Codec, msg)
	if err != nil {
		return err
	}
	return n.bus.Push(n.gateOf(w), []string{w.Session}, route, pb, js)
}

// Online reports whether user has a live session anywhere in the cluster.
func (n *Node) Online(ctx context.Context, user string) (bool, error) {
	if n.presence == nil {
		return false, ErrNotRunning
	}
	_, err := n.presence.Lookup(ctx, user)
	if errors.Is(err, cluster.ErrOffline) {
		return false, nil
	}
	return err == nil, err
}

// PushUsers sends msg on route to every listed user who is online, with one
// bus message per gate however many users it holds. It returns how many
// users were online.
func (n *Node) PushUsers(ctx context.Context, users []string, route string, msg any) (int, error) {
	if n.presence == nil {
		return 0, ErrNotRunning
	}
	if !wire.ValidRoute(route) {
		return 0, errBadRoute(route)
	}
	byGate := map[string][]string{}
	online := 0
	for _, u := range users {
		w, err := n.presence.Lookup(ctx, u)
		if errors.Is(err, cluster.ErrOffline) {
			continue
		}
		if err != nil {
			return online, err
		}
		gate := n.gateOf(w)
		byGate[gate] = append(byGate[gate], w.Session)
		online++
	}
	if online == 0 {
		return 0, nil
	}
	pb, js, err := encodeBoth(msg)
	if err != nil {
		return 0, err
	}
	for gate, sessions := range byGate {
		if err := n.bus.Push(gate, sessions, route, pb, js); err != nil {
			return online, err
		}
	}
	return online, nil
}

func (n *Node) encodeFor(codec string, msg any) (pb, js []byte, err error) {
	switch codec {
	case wire.CodecJSON:
		js, err = encode(cluster.CodecJSON, msg)
	case wire.CodecProtobuf:
		pb, err = encode(cluster.CodecProtobuf, msg)
	default:
		pb, js, err = encodeBoth(msg)
	}
	return pb, js, err
}

// bindUser records user's presence for session s and tells its gate. A
// live earlier session of the same user is kicked with 104, unless
// keepOther, when the login is refused with ErrUserOnline instead. The
// presence entry is written by compare-and-set, so of two logins of one
// user racing on two nodes exactly one session remains.
func (n *Node) bindUser(ctx context.Context, s *Session, user string, keepOther bool) error {
	if n.presence == nil {
		return ErrNotRunning
	}
	if user == "" {
		if s.user != "" {
			if err := n.presence.Clear(ctx, s.user, s.id); err != nil {
				return err
			}
		}
		return n.bus.SetUser(s.where(), s.id, "")
	}
	if s.user != "" && s.user != user {
		if err := n.presence.Clear(ctx, s.user, s.id); err != nil {
			return err
		}
	}
	gate := s.where()
	prev, had, err := n.presence.Claim(ctx, user, cluster.Where{Gate: gate, Session: s.id, Codec: s.Codec(), Since: time.Now().UTC()}, !keepOther)
	if errors.Is(err, cluster.ErrTaken) {
		return fmt.Errorf("hearth: user %q: %w", user, ErrUserOnline)
	}
	if err != nil {
		return err
	}
	if err := n.bus.SetUser(gate, s.id, user); err != nil {
		return err
	}
	if had {
		n.log.Info("duplicate login: kicking the earlier session", "user", user, "old_session", prev.Session, "old_gate", prev.Gate, "new_session", s.id)
		return n.bus.Kick(prev.Gate, prev.Session, uint16(wire.CodeLoggedInElsewhere), "logged in elsewhere")
	}
	return nil
}

// ErrUserOnline is returned by Session.ClaimUser when another live session
// holds the user.
var ErrUserOnline = errors.New("hearth: user is online in another session")

// onSessionClosed is the gate's close hook (on a gate hook worker): the
// user is no longer here.
func (n *Node) onSessionClosed(session, user string) {
	if user == "" || n.presence == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.baseCtx, 5*time.Second)
	defer cancel()
	if err := n.presence.Clear(ctx, user, session); err != nil {
		n.log.Warn("presence not cleared", "user", user, "session", session, "err", err)
	}
}

// PushSession sends msg on route to one session, outside its requests —
// for services that keep sessions they have seen (queues, rooms: keep
// Session.ID and Session.Gate) and so skip the presence lookup. A session
// resumed on another gate since is reached there, once this node has seen
// its "resumed" event.
func (n *Node) PushSession(ctx context.Context, gateID, sessionID, route string, msg any) error {
	if n.bus == nil {
		return ErrNotRunning
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if g, ok := n.resumedAt(sessionID); ok {
		gateID = g
	}
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	pb, js, err := encodeBoth(msg)
	if err != nil {
		return err
	}
	return n.bus.Push(gateID, []string{sessionID}, route, pb, js)
}

// onSessionResumed is the gate's resume hook: the user's session now lives
// on this gate. The entry moves only if it still names the session.
func (n *Node) onSessionResumed(session, user, codec string) {
	if user == "" || n.presence == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.baseCtx, 5*time.Second)
	defer cancel()
	if err := n.presence.Move(ctx, user, cluster.Where{Gate: n.id, Session: session, Codec: codec, Since: time.Now().UTC()}); err != nil {
		n.log.Warn("presence not moved after resume", "user", user, "session", session, "err", err)
	}
}

// drainGate hands this gate's sessions to another gate before it stops:
// clients get KICK 303 naming the least-loaded other gate, resume there,
// and the gate waits for them (up to Config.DrainTimeout). With no other
// gate there is nowhere to go, and Shutdown's KICK 8 follows directly.
func (n *Node) drainGate(ctx context.Context) {
	if n.cfg.Limits.ResumeGrace < 0 {
		return
	}
	var target *NodeInfo
	for _, g := range n.Gates() {
		if g.ID != n.id {
			target = &g
			break
		}
	}
	if target == nil {
		return
	}
	reason := "drain: reconnect to"
	for _, u := range []string{target.TCP, target.WS} {
		if u != "" {
			reason += " " + u
		}
	}
	dctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
	defer cancel()
	if err := n.gate.Load().Drain(dctx, reason); err != nil {
		n.log.Warn("drain incomplete", "err", err)
	}
}

// resumed tracks sessions resumed on another gate than the one a handler
// saw, from the session events, so Session methods reach them there.
// Entries live for the longest resume grace a gate could keep a stub
// forwarding. Pushes sent to the old gate meanwhile are forwarded; the new
// gate puts them back in order by their origin count (cluster.Bus.Push).
type resumed struct {
	mu sync.Mutex
	m  map[string]resumedAt
}

type resumedAt struct {
	gate string
	at   time.Time
}

const resumedTTL = 10 * time.Minute

func (n *Node) resumedAt(session string) (string, bool) {
	r := &n.resumed
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[session]
	return e.gate, ok
}

// gateOf is where to send a push for the session presence names: the gate
// it was resumed on, if this node saw that before presence moved.
func (n *Node) gateOf(w cluster.Where) string {
	if g, ok := n.resumedAt(w.Session); ok {
		return g
	}
	return w.Gate
}

// trackSession follows the session events that move or end sessions.
func (n *Node) trackSession(kind cluster.EventKind, session, gate string) {
	r := &n.resumed
	switch kind {
	case cluster.EventResumed:
		now := time.Now()
		r.mu.Lock()
		if r.m == nil {
			r.m = map[string]resumedAt{}
		}
		r.m[session] = resumedAt{gate, now}
		if len(r.m)%1024 == 0 {
			for id, old := range r.m {
				if now.Sub(old.at) > resumedTTL {
					delete(r.m, id)
				}
			}
		}
		r.mu.Unlock()
	case cluster.EventClosed:
		r.mu.Lock()
		delete(r.m, session)
		r.mu.Unlock()
		n.bus.ForgetSession(session)
		n.sysStreams.end(session)
	}
}
