package bench

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

// FanoutResult is the result of `hearth bench fanout` (--json prints it).
type FanoutResult struct {
	Bench            string           `json:"bench"`
	Transport        string           `json:"transport"`
	Codec            string           `json:"codec"`
	Sessions         int              `json:"sessions"`
	PayloadBytes     int              `json:"payload_bytes"`
	Window           int              `json:"window"`
	Server           string           `json:"server"`
	WarmupS          float64          `json:"warmup_s"`
	DurationS        float64          `json:"duration_s"`
	Publishes        int64            `json:"publishes"`
	PublishesPerSec  float64          `json:"publishes_per_s"`
	Deliveries       int64            `json:"deliveries"`
	DeliveriesPerSec float64          `json:"deliveries_per_s"`
	LatencySessions  int              `json:"latency_sessions"`
	Latency          Latency          `json:"delivery_latency"`
	Errors           map[string]int64 `json:"errors"`
	ConnectionsLost  int              `json:"connections_lost"`
	cpuSplit
}

type fanoutConfig struct {
	sessions int
	payload  int
	window   int
	duration time.Duration
	warmup   time.Duration
	stall    time.Duration
	probes   int
}

func benchFanout(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var fc fanoutConfig
	fs := newBenchFlagSet("fanout", "[--sessions N] [--duration 10s] [--payload 32] [--window 4] [--transport tcp|ws] [--addr URL | --cluster [--nats URL]] [--json]", opts, &bf, "protobuf")
	bf.clusterFlags(fs)
	fs.IntVar(&fc.sessions, "sessions", 1000, "sessions in the channel")
	fs.IntVar(&fc.payload, "payload", 32, "published payload size in bytes (at least 16: the send time and round are stamped in it)")
	fs.IntVar(&fc.window, "window", 4, "publishes in flight: the next is sent once every session has the one this many before it")
	fs.DurationVar(&fc.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&fc.warmup, "warmup", 2*time.Second, "time run before measuring")
	fs.IntVar(&fc.probes, "latency-sessions", 100, "sessions that time each delivery (spread over the channel); the others only count theirs, which costs the load generator less; 0: all")
	fs.DurationVar(&fc.stall, "stall-timeout", 15*time.Second, "give up when deliveries stop for this long")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case fc.sessions < 1:
		return usageErr(opts, "fanout", "--sessions must be at least 1")
	case fc.payload < 16 || fc.payload > 60_000:
		return usageErr(opts, "fanout", "--payload must be 16..60000")
	case fc.window < 1 || fc.window > 1000:
		return usageErr(opts, "fanout", "--window must be 1..1000")
	case fc.probes < 0:
		return usageErr(opts, "fanout", "--latency-sessions must not be negative")
	case fc.duration <= 0 || fc.warmup < 0 || fc.stall <= 0:
		return usageErr(opts, "fanout", "--duration and --stall-timeout must be positive and --warmup not negative")
	}
	res, rep, err := runFanout(ctx, &bf, fc, opts)
	if err != nil {
		return benchError(opts, "fanout", err)
	}
	emit(opts.Stdout, &bf, res, rep)
	return 0
}

// benchEpoch is the origin of the send times stamped in published messages.
var benchEpoch = time.Now()

func monoNow() int64 { return int64(time.Since(benchEpoch)) }

// publishPayload encodes a google.protobuf.BytesValue of size bytes whose
// value starts with the send time and the round, little-endian.
func publishPayload(dst []byte, size int, stamp int64, round uint64) []byte {
	dst = append(dst[:0], 0x0a)
	for v := uint64(size); ; v >>= 7 {
		if v < 0x80 {
			dst = append(dst, byte(v))
			break
		}
		dst = append(dst, byte(v)|0x80)
	}
	dst = binary.LittleEndian.AppendUint64(dst, uint64(stamp))
	dst = binary.LittleEndian.AppendUint64(dst, round)
	for i := 16; i < size; i++ {
		dst = append(dst, 'x')
	}
	return dst
}

// parseDelivery reads the send time and round from a bench.msg push: a
// BytesValue in protobuf, or in JSON its base64 string.
func parseDelivery(p []byte, json bool) (stamp int64, round uint64, ok bool) {
	var head [18]byte
	if json {
		// "<base64>": 24 base64 characters are the first 18 bytes.
		if len(p) < 26 || p[0] != '"' {
			return 0, 0, false
		}
		if _, err := base64.StdEncoding.Decode(head[:], p[1:25]); err != nil {
			return 0, 0, false
		}
	} else {
		if len(p) < 2 || p[0] != 0x0a {
			return 0, 0, false
		}
		_, n := binary.Uvarint(p[1:])
		if n <= 0 || len(p) < 1+n+16 {
			return 0, 0, false
		}
		copy(head[:], p[1+n:])
	}
	return int64(binary.LittleEndian.Uint64(head[:8])), binary.LittleEndian.Uint64(head[8:16]), true
}

// noBenchService reports whether a bench.* error means the server has no
// bench service: unknown route or unavailable, or 100 from a server that
// requires login for it.
func noBenchService(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && (we.Code == wire.CodeUnknownRoute || we.Code == wire.CodeUnavailable || we.Code == wire.CodeUnauthenticated)
}

// errNoBenchService explains a server without the bench service.
func errNoBenchService(t *target, err error) error {
	return &explainedError{fmt.Sprintf("the server at %s has no bench service (bench.join: %v): start the server with `hearth bench server`", t.url, err)}
}

func runFanout(ctx context.Context, bf *benchFlags, fc fanoutConfig, opts options) (*FanoutResult, *report, error) {
	if err := ensureFDs(fdsNeeded(fc.sessions+1, bf.inprocess)); err != nil {
		return nil, nil, err
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return nil, nil, err
	}
	defer stopProfile()
	t, err := startTarget(ctx, bf, serverNeeds{}, opts)
	if err != nil {
		return nil, nil, err
	}
	defer t.stop()

	n := fc.sessions
	probeEvery := 1 // every probeEvery-th session records latencies
	if fc.probes > 0 && n > fc.probes {
		probeEvery = (n + fc.probes - 1) / fc.probes
	}
	probes := (n + probeEvery - 1) / probeEvery
	shards := newLatencyShards(probes)
	var (
		phase     atomic.Int32
		measureAt atomic.Int64 // monoNow() when measuring started
		badMsgs   atomic.Int64
	)
	isJSON := bf.codec == wire.CodecJSON
	probe := func(i int) func(client.Push) {
		sh := shards.shard(i / probeEvery)
		return func(p client.Push) {
			now := monoNow()
			stamp, _, ok := parseDelivery(p.Payload, isJSON)
			if !ok {
				badMsgs.Add(1)
				return
			}
			if phase.Load() == phaseMeasure && stamp >= measureAt.Load() {
				sh.mu.Lock()
				_ = sh.h.RecordValue(max(1, (now-stamp)/1000))
				sh.mu.Unlock()
			}
		}
	}
	joinPayload := []byte(nil)
	if isJSON {
		joinPayload = []byte("{}")
	}
	var dialed atomic.Int64
	dialing := startProgress(opts.Stderr, func(el time.Duration) string {
		return fmt.Sprintf("fanout  connecting and joining %s/%s sessions to %s  %.1fs", FormatInt(dialed.Load()), FormatInt(int64(n)), t.dialDesc(), el.Seconds())
	})
	o := bf.clientOptions()
	sessions, err := dialAll(ctx, n, t.clientURLs(), sameOptions(o), t.external, &dialed, func(i int, c *client.Client) error {
		// Sessions without a push handler only count their pushes
		// (Client.LastPush): the client then neither copies nor queues them.
		if i%probeEvery == 0 {
			c.OnPush(benchRoute, probe(i))
		}
		_, err := c.RequestRaw(ctx, "bench.join", joinPayload)
		if noBenchService(err) {
			return errNoBenchService(t, err)
		}
		if err != nil {
			return fmt.Errorf("bench.join: %w", err)
		}
		return nil
	})
	dialing.Stop()
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(sessions)
	// Each session's push_seq counts the bench.msg pushes it got: the
	// channel's messages are its only pushes.
	delivered := func() uint64 {
		var sum uint64
		for _, c := range sessions {
			sum += c.LastPush()
		}
		return sum
	}
	po := o
	po.Codec = wire.CodecProtobuf
	pubs, err := dialAll(ctx, 1, t.clientURLs(), sameOptions(po), t.external, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("publisher: %w", err)
	}
	pub := pubs[0]
	defer pub.Close()

	var (
		published     atomic.Uint64
		pubMeasured   atomic.Int64
		pubErrs       = map[wire.Code]int64{}
		pubErrsMu     sync.Mutex
		publisherDone = make(chan error, 1)
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// waitDelivered waits until every session has round target; false
	// when the run ends first.
	waitDelivered := func(target uint64) (bool, error) {
		behind, seen, since := -1, uint64(0), time.Now()
		for i := 0; i < n; {
			got := sessions[i].LastPush()
			if got >= target {
				i++
				continue
			}
			if i != behind || got != seen {
				behind, seen, since = i, got, time.Now()
			} else if time.Since(since) > fc.stall {
				return false, stallError(fc, sessions, target)
			}
			time.Sleep(50 * time.Microsecond)
			if pctx.Err() != nil {
				return false, nil
			}
		}
		return true, nil
	}
	go func() {
		publisherDone <- func() error {
			buf := make([]byte, 0, fc.payload+16)
			for round := uint64(1); ; round++ {
				if round > uint64(fc.window) {
					if ok, err := waitDelivered(round - uint64(fc.window)); !ok {
						return err
					}
				}
				buf = publishPayload(buf, fc.payload, monoNow(), round)
				ph := phase.Load()
				_, err := pub.RequestRaw(pctx, "bench.publish", buf)
				if pctx.Err() != nil {
					return nil
				}
				if err != nil {
					var we *wire.Error
					if errors.As(err, &we) {
						select {
						case <-pub.Done():
						default:
							if noBenchService(err) {
								return errNoBenchService(t, err)
							}
							pubErrsMu.Lock()
							pubErrs[we.Code]++
							pubErrsMu.Unlock()
							time.Sleep(time.Millisecond)
							round-- // not published: publish it again
							continue
						}
					}
					return fmt.Errorf("publisher: bench.publish: %w", err)
				}
				published.Store(round)
				if ph == phaseMeasure && phase.Load() == phaseMeasure {
					pubMeasured.Add(1)
				}
			}
		}()
	}()

	var r rate
	run := startProgress(opts.Stderr, func(el time.Duration) string {
		d := int64(delivered())
		state := "warmup"
		switch phase.Load() {
		case phaseMeasure:
			state = "measuring"
		case phaseDone:
			state = "done"
		}
		return fmt.Sprintf("fanout  %-9s %5.1fs  %s publishes  %s deliveries  %s deliveries/s", state, el.Seconds(), FormatInt(int64(published.Load())), FormatInt(d), fmtRate(r.per(d, el)))
	})
	var (
		t0, t1     time.Time
		d0, d1     uint64
		cpu0, cpu1 cpuSnap
		measured   bool
		pubErr     error
	)
	wait := func(d time.Duration) error {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case pubErr = <-publisherDone:
			if pubErr == nil {
				pubErr = ctx.Err()
			}
			return pubErr
		}
	}
	err = wait(fc.warmup)
	if err == nil {
		cpu0 = t.snap(ctx)
		measureAt.Store(monoNow())
		phase.Store(phaseMeasure)
		d0 = delivered()
		t0 = time.Now()
		measured = true
		err = wait(fc.duration)
		phase.Store(phaseDone)
		d1 = delivered()
		t1 = time.Now()
		cpu1 = t.snap(ctx)
	}
	phase.Store(phaseDone)
	cancel()
	if pubErr == nil {
		pubErr = <-publisherDone
	}
	run.Stop()
	if err == nil {
		err = pubErr
	}
	if err != nil {
		return nil, nil, err
	}
	if !measured {
		return nil, nil, errors.New("stopped before measuring")
	}

	h, _ := shards.merged()
	wall := t1.Sub(t0)
	lost := 0
	var lostErr error
	for _, c := range sessions {
		select {
		case <-c.Done():
			lost++
			if lostErr == nil {
				lostErr = c.Err()
			}
		default:
		}
	}
	res := &FanoutResult{
		Bench:            "fanout",
		Transport:        bf.transport,
		Codec:            bf.codec,
		Sessions:         n,
		PayloadBytes:     fc.payload,
		Window:           fc.window,
		Server:           t.desc,
		WarmupS:          fc.warmup.Seconds(),
		DurationS:        round2(wall.Seconds()),
		Publishes:        pubMeasured.Load(),
		PublishesPerSec:  round2(float64(pubMeasured.Load()) / wall.Seconds()),
		Deliveries:       int64(d1 - d0),
		DeliveriesPerSec: round2(float64(d1-d0) / wall.Seconds()),
		LatencySessions:  probes,
		Latency:          summarize(h),
		Errors:           map[string]int64{},
		ConnectionsLost:  lost,
	}
	for c, k := range pubErrs {
		res.Errors["publish "+codeKey(c)] = k
	}
	if b := badMsgs.Load(); b > 0 {
		res.Errors["malformed bench.msg"] = b
	}
	res.cpuSplit = splitCPU(cpu0, cpu1, res.Deliveries, t)
	rep := &report{title: fmt.Sprintf("hearth bench fanout: %d sessions in one channel, %s, %s, %d-byte messages, window %d, %s measured after %s warmup; server: %s",
		n, bf.transport, bf.codec, fc.payload, fc.window, wall.Round(time.Millisecond), fc.warmup, t.desc)}
	rep.add("publishes", "%s", FormatInt(res.Publishes))
	rep.add("publish rate", "%s publishes/s", fmtRate(res.PublishesPerSec))
	rep.add("deliveries", "%s", FormatInt(res.Deliveries))
	rep.add("delivery rate", "%s deliveries/s", fmtRate(res.DeliveriesPerSec))
	rep.latencyRows("delivery latency", res.Latency)
	rep.add("latency sampled on", "%d sessions, %s deliveries", probes, FormatInt(res.Latency.Count))
	rep.errorRows(res.Errors)
	if lost > 0 {
		rep.add("connections lost", "%d", lost)
		rep.note("a session ended during the run: %v", lostErr)
	}
	cpuRows(rep, res.cpuSplit, "delivery", t)
	if res.Deliveries == 0 {
		return nil, nil, fmt.Errorf("no message was delivered while measuring (%d publishes, %d sessions lost: %v)", res.Publishes, lost, lostErr)
	}
	if pubErrs[wire.CodeRateLimited] > 0 {
		rep.note("200 rate limited: the server limits requests per session (--session-rate, 1000/s by default) and the publisher is one session; start it with --session-rate -1 to benchmark it")
	}
	serverNotes(rep, t)
	return res, rep, nil
}

// stallError explains why deliveries stopped.
func stallError(fc fanoutConfig, sessions []*client.Client, round uint64) error {
	behind, closed := 0, 0
	var firstErr error
	for _, c := range sessions {
		if c.LastPush() < round {
			behind++
		}
		select {
		case <-c.Done():
			closed++
			if firstErr == nil {
				firstErr = c.Err()
			}
		default:
		}
	}
	msg := fmt.Sprintf("deliveries stalled for %s: %d of %d sessions are missing publish %d", fc.stall, behind, len(sessions), round)
	if closed > 0 {
		msg += fmt.Sprintf("; %d sessions were closed, the first with: %v", closed, firstErr)
	}
	return errors.New(msg)
}
