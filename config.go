package hearth

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/hearth-server/hearth/internal/gate"
)

// Off disables a listener when used as its address.
const Off = "off"

// Config configures a Node. The zero value runs a whole cluster in one
// process: gate on :7100 (TCP) and :7101 (WebSocket), admin on
// 127.0.0.1:7180, an embedded NATS server with its data under ./data.
type Config struct {
	// NodeID names this node on the bus; it must be unique in the cluster.
	// Zero: "node-" and 8 random hex digits.
	NodeID string
	// TCPAddr is the gate's TCP listen address. Zero: ":7100". Off disables.
	TCPAddr string
	// WSAddr is the gate's WebSocket listen address (path /ws). Zero: ":7101". Off disables.
	WSAddr string
	// AdminAddr serves /healthz, /readyz, /metrics and the admin API
	// (/v1/…). Zero: "127.0.0.1:7180", loopback only. Off disables. Any
	// address other machines can reach needs AdminToken: New refuses it
	// without one.
	AdminAddr string
	// DataDir holds the embedded NATS server's JetStream data. Zero: "./data".
	DataDir string
	// NATSURL is an external NATS server or cluster (comma-separated URLs).
	// Zero: an embedded nats-server in this process.
	NATSURL string
	// NATSListen makes the embedded NATS server accept other nodes on this
	// host:port. Zero: in-process only.
	NATSListen string
	// NATSCredsFile is a NATS credentials file (JWT + nkey) for NATSURL.
	// User and password can instead be given in the URL. Zero: none.
	NATSCredsFile string
	// NATSCAFile, NATSCertFile and NATSKeyFile configure TLS to NATSURL: a
	// CA bundle to trust, and a client certificate for mutual TLS. Zero:
	// system roots, no client certificate (tls:// URLs still use TLS).
	NATSCAFile   string
	NATSCertFile string
	NATSKeyFile  string
	// NATSPublishers is how many connections the node publishes on: the
	// first also subscribes and forwards the gate's requests, the others
	// carry what goes to gates (each gate's on one, in order), so that
	// thousands of publishing goroutines do not queue on one connection's
	// lock. Zero or less: 4. 1: everything on one connection.
	NATSPublishers int
	// Prefix of every bus subject. Zero: "hearth".
	Prefix string
	// TLS, when set, serves TLS on both client listeners. Zero: TLSCertFile
	// and TLSKeyFile, when both are set; otherwise plain TCP.
	TLS         *tls.Config
	TLSCertFile string
	TLSKeyFile  string
	// Roles lists what this node runs: "gate" and service names. Zero: all.
	Roles []string
	// Advertise is the host clients should dial to reach this node's gate,
	// published in the registry (sys.gates, /v1/gates). Zero: the listen
	// host, or the machine's hostname when listening on all interfaces.
	Advertise string
	// RegistryInterval is how often the node refreshes its registry entry;
	// a node silent for three intervals has left. Zero: 500ms.
	RegistryInterval time.Duration
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on the admin API (/v1/…). Zero: the read-only admin API needs no
	// token (allowed on a loopback AdminAddr only) and /v1/drain is refused.
	AdminToken string
	// Limits tunes the gate. Its zero value holds production defaults.
	Limits Limits
	// RequireUser makes the gate answer 100 to requests for any service not
	// in PublicServices from a session not bound to a user (see
	// Session.SetUser), before they reach a service. Zero: every route is
	// open, as a node without an auth service needs.
	RequireUser bool
	// PublicServices are the services a session may call before login when
	// RequireUser is set. Zero: "sys" and "auth".
	PublicServices []string
	// DisableSysPush turns off the sys.push diagnostic route.
	DisableSysPush bool
	// HugePages has the node move its process's memory onto 2 MiB pages
	// on Linux whose transparent huge page mode is "madvise" (the usual
	// default), where the Go runtime's heap would stay on 4 KiB pages: as
	// the memory grows, it asks the kernel to put each 2 MiB of it that is
	// nearly all in use on one huge page (MADV_COLLAPSE, Linux 6.1+). On a
	// machine whose TLB misses are dear it made pushes run late far less
	// often; where they are not, the copying cost more than it saved
	// (docs/operations.md § Transparent huge pages). Under "always" the
	// kernel does it already, under "never" the operator has ruled it
	// out, and off Linux there is nothing to do. A process running
	// several nodes with it does it once for each. Zero: off.
	HugePages bool
	// MaxHandlers caps the requests a node's services run at once; past it
	// requests are answered with 203. Zero: 10,000.
	MaxHandlers int
	// ShutdownTimeout bounds Run's shutdown after its context ends. Zero: 10s.
	ShutdownTimeout time.Duration
	// DrainTimeout bounds a drain: when the node stops and another gate
	// serves, its clients get KICK 303 naming that gate and the node waits
	// up to this long for them to resume there. Zero: 30s.
	DrainTimeout time.Duration
	// Logger receives the node's structured logs. Zero: slog.Default().
	Logger *slog.Logger
}

// Limits are the gate's timeouts and flow-control limits: what one client
// connection may cost. The zero value of each field means its default;
// docs/security.md lists them all with their flags.
type Limits struct {
	// MaxFrame is the largest frame body accepted (KICK 4 past it).
	// Zero: 65,536 bytes.
	MaxFrame int
	// HandshakeTimeout bounds the wait for the first frame (KICK 6).
	// Zero: 5s.
	HandshakeTimeout time.Duration
	// Heartbeat is the heartbeat_ms told to clients; a session silent for
	// 3× this is closed with KICK 7. Zero: 10s.
	Heartbeat time.Duration
	// RequestTimeout is how long a service has to answer before the client
	// gets 302. Zero: 5s.
	RequestTimeout time.Duration
	// SendQueueBytes bounds a session's unsent output; past it the session
	// is kicked with 202. Zero: 1 MiB.
	SendQueueBytes int
	// WriteTimeout bounds one write to a client; a client that does not
	// read for this long is kicked with 202. Zero: 10s.
	WriteTimeout time.Duration
	// MaxSessions caps this gate's connections (KICK 203 past it).
	// Zero: 100,000.
	MaxSessions int
	// MaxConnsPerIP caps concurrent connections from one IP (KICK 203).
	// Zero: 1,000. Negative: unlimited.
	MaxConnsPerIP int
	// ConnRatePerIP is new connections per second allowed from one IP, with
	// a burst of ConnBurstPerIP (KICK 200). Zero: 100/s, burst twice the
	// rate. Negative: unlimited.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// RequestRate is requests (and notifies) per second allowed per
	// session, with a burst of RequestBurst; over it requests get 200.
	// Zero: 1,000/s, burst = rate. Negative: unlimited.
	RequestRate  float64
	RequestBurst int
	// MaxInFlight caps a session's unanswered requests; over it requests
	// get 201. Zero: 64.
	MaxInFlight int
	// ResumeGrace is how long a session whose connection dropped stays
	// resumable. Zero: 60s. Negative: sessions end with their connection.
	ResumeGrace time.Duration
	// ResumePushes and ResumeBytes bound the pushes a session keeps for
	// replay; a detached session that would need more is lost (304). A
	// push counts its payload, route and ids and ~100 bytes for its slot.
	// Zero: 256 pushes, 256 KiB.
	ResumePushes int
	ResumeBytes  int
	// ResumeGateBytes bounds the pushes the whole gate keeps for replay.
	// A connected session keeps at most its share — half of it over the
	// gate's sessions, at least ResumeBytes/8 — and only its newest
	// ResumeBytes/8 while the budget is spent (its client has most likely
	// read the rest), so one whose connection then drops may be unable to
	// resume (304, and the client starts afresh); a detached session's
	// pushes are never dropped for it. Zero: 1 GiB.
	ResumeGateBytes int
	// ResumeAckBytes: once this many bytes of pushes (counted as for
	// ResumeBytes) have been queued to a connected session, the gate
	// follows the next with a PING, unless one is awaited already; the
	// client's PONG shows it has read every push and response before it:
	// those pushes leave the replay buffer after 10s (kept that long for
	// a hand-over's duplicate check), those responses the response cache
	// (their seqs stay: a re-send is 306). A client that keeps up so holds
	// a few KB, not its share of ResumeGateBytes; each PONG costs it a
	// write and the gate a read (4096: one every ~6 Niu Niu pushes). The
	// heartbeat's PINGs acknowledge the same way in any case. Zero or
	// negative: no such PINGs.
	ResumeAckBytes int
	// ResponseCache is how many responses per session are kept, by seq, to
	// answer a request re-sent after a resume. Zero: 128.
	ResponseCache int
	// ResponseCacheBytes bounds the bytes of one session's cached
	// responses, ResponseCacheItem the largest response cached, and
	// ResponseCacheGate the bytes cached by the whole gate. A response not
	// cached is still remembered by seq: its re-send gets 306, never a
	// second execution. Zero: 64 KiB, 16 KiB, 64 MiB.
	ResponseCacheBytes int
	ResponseCacheItem  int
	ResponseCacheGate  int
	// ChannelBuffer is how many channel messages a gate queues for fan-out
	// to its local members. Past it messages are dropped: the members of
	// that channel see a gap in their push sequence, and
	// hearth_channel_drops_total counts it. Zero: 65,536.
	ChannelBuffer int
	// ParkGap: on Linux, a plain-TCP session whose frames come at least
	// this far apart waits for its next one on the gate's epoll poller,
	// with no goroutine and no read buffer (hearth_sessions_parked);
	// closer together, its goroutine blocks on the connection, which costs
	// less per frame. WebSocket and TLS sessions always keep a goroutine.
	// Zero: 50ms. Negative: every session keeps a goroutine.
	ParkGap time.Duration
	// Readers bounds the goroutines that read parked sessions the poller
	// woke, at once (hearth_read_queue counts those waiting). They yield
	// their core between two sessions, so a room's timers and pushes go
	// ahead of clients' next requests when the cores are short, as in a
	// garbage collection's mark. Zero: twice GOMAXPROCS. Negative: a
	// goroutine per woken session, unbounded.
	Readers int
}

// gate converts the limits to the gate's own type, which applies the
// defaults. The two types have the same fields, so a field added to one
// and not the other fails to compile here.
func (l Limits) gate() gate.Limits { return gate.Limits(l) }
