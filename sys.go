package hearth

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/syspb"
)

// maxSysPushStreams bounds the sys.push streams a node runs at once, so the
// diagnostic route cannot be turned into a way to pile up goroutines.
const maxSysPushStreams = 1000

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
		target := *s
		target.after = nil
		s.AfterReply(func() { go n.sysPush(&target, req.Count, time.Duration(req.IntervalMs)*time.Millisecond) })
		return &syspb.PushResp{Count: req.Count}, nil
	})
	return svc
}

// sysPush sends the ticks of one sys.push. It runs after the response has
// been sent, so a client sees the response first and then sys.tick 1..count.
func (n *Node) sysPush(s *Session, count uint32, interval time.Duration) {
	defer n.sysPushes.Add(-1)
	ctx := n.baseCtx
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
