package client

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// startEchoPeer is a lean echo server for benchmarks: every REQUEST is
// answered with its own payload, responses batched per read burst.
func startEchoPeer(b *testing.B, kind string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ackJSON, _ := json.Marshal(testAck())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				isWS := kind == "ws"
				if isWS {
					if _, err := ws.Upgrade(c); err != nil {
						return
					}
				}
				br := bufio.NewReaderSize(c, 16<<10)
				bw := bufio.NewWriterSize(c, 16<<10)
				var buf, out []byte
				read := func() ([]byte, error) {
					if isWS {
						d, _, err := wsutil.ReadClientData(readWriter{br, c})
						return d, err
					}
					body, err := wire.ReadTCP(br, buf, wire.DefaultMaxFrame)
					buf = body
					return body, err
				}
				write := func(body []byte) {
					if isWS {
						_ = wsutil.WriteServerMessage(bw, ws.OpBinary, body)
						return
					}
					bw.Write(wire.AppendLength(out[len(body):len(body)], len(body)))
					bw.Write(body)
				}
				for {
					body, err := read()
					if err != nil {
						return
					}
					f, err := wire.Decode(body)
					if err != nil {
						return
					}
					switch f.Kind {
					case wire.KindHandshake:
						out = wire.AppendHandshakeAck(out[:0], ackJSON)
					case wire.KindRequest:
						out = wire.AppendResponse(out[:0], f.Seq, 0, f.Payload)
					case wire.KindPing:
						out = wire.AppendPong(out[:0], f.Clock)
					default:
						continue
					}
					write(out)
					if br.Buffered() == 0 {
						if bw.Flush() != nil {
							return
						}
					}
				}
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	if kind == "ws" {
		return "ws://" + ln.Addr().String() + "/ws"
	}
	return "tcp://" + ln.Addr().String()
}

// BenchmarkRequestEncode measures building one REQUEST frame (JSON codec).
func BenchmarkRequestEncode(b *testing.B) {
	for _, codec := range []string{"json", "protobuf"} {
		b.Run(codec, func(b *testing.B) {
			c := &Client{json: codec == "json"}
			cn := &conn{prefix: wire.LengthSize}
			req := &syspb.PushReq{Count: 10, IntervalMs: 250}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				bp := bufPool.Get().(*[]byte)
				f, _, err := c.appendFrame(cn, *bp, true, uint32(i), "sys.push", req, nil, false)
				if err != nil {
					b.Fatal(err)
				}
				putBuf(bp, f)
			}
		})
	}
}

// BenchmarkRequest: 64 clients, one request in flight each, against the
// echo peer on the same machine (so the numbers include the peer's CPU).
func BenchmarkRequest(b *testing.B) {
	payload := []byte(`{"msg":"hello hearth, this is forty b"}`)
	for _, kind := range []string{"tcp", "ws"} {
		b.Run(kind+"/raw", func(b *testing.B) {
			benchClients(b, kind, 64, func(c *Client) error {
				_, err := c.RequestRaw(context.Background(), "sys.ping", payload)
				return err
			})
		})
		b.Run(kind+"/proto-json", func(b *testing.B) {
			req := &syspb.PushReq{Count: 10, IntervalMs: 250}
			benchClients(b, kind, 64, func(c *Client) error {
				var resp syspb.PushReq
				return c.Request(context.Background(), "sys.push", req, &resp)
			})
		})
	}
}

// BenchmarkRequestReconnect is BenchmarkRequest's tcp/raw with
// Options.Reconnect on (each request keeps its frame for a resume).
func BenchmarkRequestReconnect(b *testing.B) {
	payload := []byte(`{"msg":"hello hearth, this is forty b"}`)
	benchClients(b, "tcp", 64, func(c *Client) error {
		_, err := c.RequestRaw(context.Background(), "sys.ping", payload)
		return err
	}, Options{Reconnect: true})
}

func benchClients(b *testing.B, kind string, n int, op func(*Client) error, opts ...Options) {
	addr := startEchoPeer(b, kind)
	clients := make([]*Client, n)
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	for i := range clients {
		c, err := Dial(context.Background(), addr, o)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := b.N / n
	for i, c := range clients {
		count := per
		if i < b.N%n {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range count {
				if err := op(c); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
