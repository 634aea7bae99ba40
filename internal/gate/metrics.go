package gate

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-server/hearth/wire"
)

// Metrics are a gate's Prometheus metrics, all prefixed hearth_.
type Metrics struct {
	sessions  *prometheus.GaugeVec
	framesIn  prometheus.Counter
	framesOut [wire.KindKick + 1]prometheus.Counter
	writes    prometheus.Counter // socket writes, each of one frame or more
	latency   *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	kicks     *prometheus.CounterVec
	detached  prometheus.Gauge
	resumes   *prometheus.CounterVec
	// channelDrops counts the times the bus dropped channel messages
	// because this gate's fan-out fell behind.
	channelDrops prometheus.Counter
	// slowForwards counts requests whose hand-over to the bus took past
	// slowForward: the NATS server was not reading the gate's connection.
	slowForwards prometheus.Counter
	// inboxDrops counts messages of the node's own services that the gate
	// dropped because it fell behind them (inboxBytes queued).
	inboxDrops prometheus.Counter
	// pushDelay is a service push's time from its send (Envelope.Sent) to
	// the gate's write of it to the client's socket.
	pushDelay prometheus.Histogram

	reg prometheus.Registerer // nil: no registry

	mu       sync.RWMutex
	byRoute  map[string]prometheus.Observer
	byCode   map[wire.Code]prometheus.Counter
	sessByTr map[string]prometheus.Gauge
}

// NewMetrics registers a gate's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics { return newMetrics(reg) }

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_sessions", Help: "Open client sessions, by transport.",
		}, []string{"transport"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hearth_request_duration_seconds",
			Help:    "Time from a request's arrival at the gate to its response, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_request_errors_total", Help: "Requests answered with a non-zero status, by code.",
		}, []string{"code"}),
		kicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_kicks_total", Help: "Sessions closed with KICK, by code.",
		}, []string{"code"}),
		detached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hearth_sessions_detached", Help: "Sessions without a connection, resumable until their grace passes.",
		}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_resumes_total", Help: "Resume attempts, by result (ok, lost).",
		}, []string{"result"}),
		channelDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_channel_drops_total", Help: "Times the bus dropped channel messages because the gate's fan-out fell behind; members see a gap in push_seq.",
		}),
		slowForwards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_bus_slow_forwards_total", Help: "Requests whose forward to the bus blocked for 500 ms or more (the NATS server did not read the gate's connection); meanwhile that session's further requests were not read.",
		}),
		inboxDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_gate_inbox_drops_total", Help: "Messages from the node's own services (answers, pushes, control) that the gate dropped because 256 MiB of them waited: it fell behind.",
		}),
		pushDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hearth_push_delay_seconds",
			Help:    "Time from a service's push (a room's Push, PushEach) to the gate's write of it to the client's socket: the bus, the gate's queue and the write.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_socket_writes_total", Help: "Writes to client sockets; each carries one frame or more (compare hearth_frames_total).",
		}),
		byRoute:  map[string]prometheus.Observer{},
		byCode:   map[wire.Code]prometheus.Counter{},
		sessByTr: map[string]prometheus.Gauge{},
	}
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hearth_frames_total", Help: "Protocol frames, by direction and kind.",
	}, []string{"direction", "kind"})
	m.framesIn = frames.WithLabelValues("in", "any")
	for k := wire.KindHandshake; k <= wire.KindKick; k++ {
		m.framesOut[k] = frames.WithLabelValues("out", k.String())
	}
	for _, tr := range []string{"tcp", "ws"} {
		m.sessByTr[tr] = m.sessions.WithLabelValues(tr)
	}
	m.reg = reg
	if reg != nil {
		reg.MustRegister(m.sessions, frames, m.latency, m.errors, m.kicks, m.detached, m.resumes, m.channelDrops, m.slowForwards, m.inboxDrops, m.writes, m.pushDelay)
	}
	return m
}

func (m *Metrics) frameIn()                       { m.framesIn.Inc() }
func (m *Metrics) frameOut(k wire.Kind)           { m.framesOut[k].Inc() }
func (m *Metrics) wrote()                         { m.writes.Inc() }
func (m *Metrics) slowForward()                   { m.slowForwards.Inc() }
func (m *Metrics) inboxDrop()                     { m.inboxDrops.Inc() }
func (m *Metrics) sessionOpened(transport string) { m.sessByTr[transport].Inc() }
func (m *Metrics) sessionClosed(transport string) { m.sessByTr[transport].Dec() }
func (m *Metrics) kicked(code wire.Code)          { m.kicks.WithLabelValues(strconv.Itoa(int(code))).Inc() }

func (m *Metrics) requestError(code wire.Code) {
	m.mu.RLock()
	c := m.byCode[code]
	m.mu.RUnlock()
	if c == nil {
		m.mu.Lock()
		if c = m.byCode[code]; c == nil {
			c = m.errors.WithLabelValues(strconv.Itoa(int(code)))
			m.byCode[code] = c
		}
		m.mu.Unlock()
	}
	c.Inc()
}

// observe records a request's latency. Routes nobody serves are recorded
// under one label, so clients cannot inflate the metric's cardinality.
func (m *Metrics) observe(route string, status wire.Code, d time.Duration) {
	if status == wire.CodeUnknownRoute || status == wire.CodeUnavailable {
		route = "unknown"
	}
	m.mu.RLock()
	o := m.byRoute[route]
	m.mu.RUnlock()
	if o == nil {
		m.mu.Lock()
		if o = m.byRoute[route]; o == nil {
			o = m.latency.WithLabelValues(route)
			m.byRoute[route] = o
		}
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
}
