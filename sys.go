package hearth

import (
	"context"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/syspb"
)

// maxSysPushStreams bounds the sys.push streams a node runs at once, and
// maxSysPushPerSession those of one session, so the diagnostic route can
// neither pile up goroutines nor be taken whole by one client. A stream
// ends with its session.
const (
	maxSysPushStreams    = 1000
	maxSysPushPerSession = 4
)

// sysStreams are the running sys.push streams by session; mu.
type sysStreams struct {
	mu sync.Mutex
	m  map[string][]context.CancelFunc
}

// start registers a stream of session, or reports that it has its share.
func (st *sysStreams) start(parent context.Context, session string) (context.Context, func(), bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.m[session]) >= maxSysPushPerSession {
		return nil, nil, false
	}
	if st.m == nil {
		st.m = map[string][]context.CancelFunc{}
	}
	ctx, cancel := context.WithCancel(parent)
	st.m[session] = append(st.m[session], cancel)
	i := len(st.m[session]) - 1
	done := func() {
		cancel()
		st.mu.Lock()
		defer st.mu.Unlock()
		if fns := st.m[session]; i < len(fns) {
			fns[i] = nil
			for _, f := range fns {
				if f != nil {
					return
				}
			}
			delete(st.m, session)
		}
	}
	return ctx, done, true
}

// end stops every stream of a session that closed.
func (st *sysStreams) end(session string) {
	st.mu.Lock()
	fns := st.m[session]
	delete(st.m, session)
	st.mu.Unlock()
	for _, f := range fns {
		if f != nil {
			f()
		}
	}
}

// sessions is the number of sessions with a stream running.
func (st *sysStreams) sessions() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

// sysService is the diagnostic service every server has (PROTOCOL.md).
func (n *Node) sysService() *Service {
	svc := NewService("sys")
	HandleRaw(svc, "ping", func(_ context.Context, _ *Session, payload []byte) ([]byte, error) {
		return payload, nil
	})
	HandleRaw(svc, "time", func(_ context.Context, s *Session, payload []byte) ([]byte, error) {
		// The request is the empty message: anything else is 400, as on
		// every other route.
		if err := unmarshal(s.codec, payload, &emptypb.Empty{}); err != nil {
			return nil, NewError(CodeInvalidPayload, "invalid payload: sys.time takes an empty request: "+err.Error())
		}
		now := time.Now().UnixMilli()
		if s.codec == cluster.CodecJSON {
			// A JSON number, as PROTOCOL.md shows (protojson would quote an int64).
			return append(strconv.AppendInt([]byte(`{"server_time_ms":`), now, 10), '}'), nil
		}
		return marshal(s.codec, &syspb.TimeResp{ServerTimeMs: now})
	})
	Handle(svc, "gates", func(context.Context, *Session, *syspb.GatesReq) (*syspb.GatesResp, error) {
		return n.gatesResp(), nil
	})
	Handle(svc, "push", func(ctx context.Context, s *Session, req *syspb.PushReq) (*syspb.PushResp, error) {
		if n.cfg.DisableSysPush {
			return nil, NewError(CodeUnknownRoute, "sys.push is disabled on this server")
		}
		if req.Count < 1 || req.Count > 1000 || req.IntervalMs > 1000 {
			return nil, NewError(CodeInvalidPayload, "count must be 1..1000 and interval_ms 0..1000")
		}
		if n.sysPushes.Add(1) > maxSysPushStreams {
			n.sysPushes.Add(-1)
			return nil, NewError(CodeOverloaded, "too many sys.push streams running; try again later")
		}
		sctx, done, ok := n.sysStreams.start(n.baseCtx, s.id)
		if !ok {
			n.sysPushes.Add(-1)
			s.Logger().Warn("sys.push refused: session has its share of streams", "code", int(CodeOverloaded), "max", maxSysPushPerSession)
			return nil, Errorf(CodeOverloaded, "at most %d sys.push streams per session; wait for one to end", maxSysPushPerSession)
		}
		target := *s
		target.after = nil
		s.AfterReply(func() {
			go func() {
				defer done()
				n.sysPush(sctx, &target, req.Count, time.Duration(req.IntervalMs)*time.Millisecond)
			}()
		})
		return &syspb.PushResp{Count: req.Count}, nil
	})
	return svc
}

// sysPush sends the ticks of one sys.push. It runs after the response has
// been sent, so a client sees the response first and then sys.tick 1..count.
func (n *Node) sysPush(ctx context.Context, s *Session, count uint32, interval time.Duration) {
	defer n.sysPushes.Add(-1)
	for i := uint32(1); i <= count; i++ {
		if i > 1 && interval > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		} else if ctx.Err() != nil {
			return
		}
		if err := s.Push(ctx, "sys.tick", &syspb.Tick{N: i}); err != nil {
			n.log.Debug("sys.push stopped", "session", s.id, "err", err)
			return
		}
	}
}
