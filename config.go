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
// process: gate on :7100 (TCP) and :7101 (WebSocket), admin on :7180, an
// embedded NATS server with its data under ./data.
type Config struct {
	// NodeID names this node on the bus; it must be unique in the cluster.
	// Zero: "node-" and 8 random hex digits.
	NodeID string
	// TCPAddr is the gate's TCP listen address. Zero: ":7100". Off disables.
	TCPAddr string
	// WSAddr is the gate's WebSocket listen address (path /ws). Zero: ":7101". Off disables.
	WSAddr string
	// AdminAddr serves /healthz, /readyz and /metrics. Zero: ":7180". Off disables.
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
	// a node silent for three intervals has left. Zero: 1s.
	RegistryInterval time.Duration
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on the admin API (/v1/…). Zero: the admin API needs no token, so bind
	// AdminAddr to a private interface.
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

// Limits are the gate's timeouts and flow-control limits (see gate.Limits
// for each field and its default).
type Limits = gate.Limits
