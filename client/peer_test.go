package client

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/wire"
)

// The scripted test peer: a real listener that speaks the protocol with the
// wire package, over TCP or (with gobwas/ws) WebSocket, optionally with TLS.

var transports = []string{"tcp", "ws", "polled"}

// A "polled" peer is a tcp one whose clients, dialled with dial, are read
// by testPoller (Options.Poller): polledAddrs holds its addresses.
var (
	polledAddrs sync.Map // addr → true
	pollerOnce  sync.Once
	testPoller  *Poller
)

// withPoller sets o.Poller if addr is a "polled" peer's.
func withPoller(t testing.TB, addr string, o Options) Options {
	if _, ok := polledAddrs.Load(addr); !ok {
		return o
	}
	pollerOnce.Do(func() {
		var err error
		if testPoller, err = NewPoller(PollerOptions{Goroutines: 2, Gather: time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	})
	o.Poller = testPoller
	return o
}

var allTransports = []string{"tcp", "ws", "tls", "wss"}

var testRoutes = map[string]uint16{"sys.ping": 1, "sys.time": 2, "sys.push": 3, "sys.tick": 4}

func testAck() wire.HandshakeAck {
	return wire.HandshakeAck{
		Session:      "sess-1",
		Node:         "gate-7",
		HeartbeatMS:  0,
		Routes:       testRoutes,
		Resume:       "resume-token",
		ServerTimeMS: 1700000000000,
	}
}

var (
	tlsOnce      sync.Once
	tlsServerCfg *tls.Config
	tlsClientCfg *tls.Config
)

// testTLS returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config trusting it.
func testTLS(t testing.TB) (server, client *tls.Config) {
	tlsOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "hearth test"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:              []string{"localhost"},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tlsServerCfg = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
		tlsClientCfg = &tls.Config{RootCAs: pool}
	})
	return tlsServerCfg, tlsClientCfg
}

// pconn is the peer's side of one connection.
type pconn struct {
	t  testing.TB
	n  int // 1 for the peer's first connection, 2 for the next, …
	c  net.Conn
	ws bool
	br *bufio.Reader
	mu sync.Mutex // serialises writes
}

// peer is a running scripted test peer.
type peer struct {
	addr  string
	conns atomic.Int32 // connections accepted
	stop  func()       // closes the listener and every connection now
}

// startPeer listens on 127.0.0.1 and runs script for each connection; after
// the script it reads (and discards) until the client goes away. It returns
// the address for Dial. Cleanup closes everything and waits for the peer.
func startPeer(t testing.TB, kind string, script func(pc *pconn)) string {
	t.Helper()
	return newPeer(t, kind, script).addr
}

// newPeer is startPeer returning the peer.
func newPeer(t testing.TB, kind string, script func(pc *pconn)) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raw := ln.Addr().String()
	if kind == "tls" || kind == "wss" {
		srv, _ := testTLS(t)
		ln = tls.NewListener(ln, srv)
	}
	isWS := kind == "ws" || kind == "wss"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
		p      = &peer{}
	)
	p.stop = func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			n := int(p.conns.Add(1))
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				pc := &pconn{t: t, n: n, c: c, ws: isWS}
				if isWS {
					u := ws.Upgrader{OnRequest: func(uri []byte) error {
						if string(uri) != "/ws" {
							return ws.RejectConnectionError(ws.RejectionStatus(404))
						}
						return nil
					}}
					if _, err := u.Upgrade(c); err != nil {
						t.Errorf("peer: upgrade: %v", err)
						return
					}
				}
				pc.br = bufio.NewReader(c)
				script(pc)
				pc.drain()
			}()
		}
	}()
	t.Cleanup(func() {
		p.stop()
		wg.Wait()
	})
	switch kind {
	case "ws", "wss":
		p.addr = kind + "://" + raw + "/ws"
	case "polled":
		p.addr = "tcp://" + raw
		polledAddrs.Store(p.addr, true)
	default:
		p.addr = kind + "://" + raw
	}
	return p
}

// clientOpts returns options for kind (the TLS config for tls and wss).
func clientOpts(t testing.TB, kind string, o Options) Options {
	if kind == "tls" || kind == "wss" {
		_, cli := testTLS(t)
		o.TLS = cli
	}
	return o
}

type pcWriter struct{ p *pconn }

func (w pcWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.c.Write(b)
}

type readWriter struct {
	io.Reader
	io.Writer
}

// readBody reads one frame body.
func (p *pconn) readBody() ([]byte, error) {
	if !p.ws {
		return wire.ReadTCP(p.br, nil, 1<<20)
	}
	for {
		data, op, err := wsutil.ReadClientData(readWriter{p.br, pcWriter{p}})
		if err != nil {
			return nil, err
		}
		if op != ws.OpBinary {
			p.t.Errorf("peer: got WebSocket opcode %v, want binary", op)
			continue
		}
		return data, nil
	}
}

// next reads and decodes one frame. When the connection ends it quietly
// ends the peer goroutine: the test's own assertions report what is missing.
func (p *pconn) next() wire.Frame {
	body, err := p.readBody()
	if err != nil {
		runtime.Goexit()
	}
	f, err := wire.Decode(body)
	if err != nil {
		p.t.Errorf("peer: bad frame from client: %v", err)
		runtime.Goexit()
	}
	return f
}

// expect reads the next frame and fails unless it is of kind k.
func (p *pconn) expect(k wire.Kind) wire.Frame {
	f := p.next()
	if f.Kind != k {
		p.t.Errorf("peer: got %v, want %v", f.Kind, k)
		runtime.Goexit()
	}
	return f
}

// send writes one frame body.
func (p *pconn) send(body []byte) {
	p.mu.Lock()
	var err error
	if p.ws {
		err = wsutil.WriteServerMessage(p.c, ws.OpBinary, body)
	} else {
		_, err = p.c.Write(append(wire.AppendLength(nil, len(body)), body...))
	}
	p.mu.Unlock()
	if err != nil {
		runtime.Goexit()
	}
}

// handshake reads the HANDSHAKE, answers with ack and returns it.
func (p *pconn) handshake(ack wire.HandshakeAck) wire.Handshake {
	hs := p.readHandshake()
	p.ack(ack)
	return hs
}

// readHandshake reads the HANDSHAKE without answering it.
func (p *pconn) readHandshake() wire.Handshake {
	f := p.expect(wire.KindHandshake)
	var hs wire.Handshake
	if err := json.Unmarshal(f.Payload, &hs); err != nil {
		p.t.Errorf("peer: handshake JSON %q: %v", f.Payload, err)
		runtime.Goexit()
	}
	return hs
}

// ack sends a HANDSHAKE_ACK.
func (p *pconn) ack(ack wire.HandshakeAck) {
	b, err := json.Marshal(ack)
	if err != nil {
		panic(err)
	}
	p.send(wire.AppendHandshakeAck(nil, b))
}

// push sends PUSH seq on sys.tick with payload {"n":seq}.
func (p *pconn) push(seq uint64) {
	p.send(wire.AppendPush(nil, seq, "sys.tick", fmt.Appendf(nil, `{"n":%d}`, seq)))
}

// reset closes the connection with a TCP RST.
func (p *pconn) reset() {
	if tc, ok := p.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	} else {
		p.t.Errorf("peer: cannot reset a %T", p.c)
	}
	p.c.Close()
}

// route returns a REQUEST/NOTIFY frame's route name.
func route(f wire.Frame) string {
	if f.HasRouteID() {
		for r, id := range testRoutes {
			if id == f.RouteID {
				return r
			}
		}
		return "#unknown"
	}
	return string(f.Route)
}

// serve answers frames until the connection ends: h returns a REQUEST's
// response (ok false: no response) and sees NOTIFYs; PINGs get PONGs.
func (p *pconn) serve(h func(f wire.Frame) (status wire.Code, payload []byte, ok bool)) {
	for {
		f := p.next()
		switch f.Kind {
		case wire.KindRequest:
			if st, pl, ok := h(f); ok {
				p.send(wire.AppendResponse(nil, f.Seq, st, pl))
			}
		case wire.KindNotify:
			h(f)
		case wire.KindPing:
			p.send(wire.AppendPong(nil, f.Clock))
		case wire.KindPong:
		case wire.KindBye:
			// Close ends the session; the peer keeps reading until EOF.
		default:
			p.t.Errorf("peer: unexpected %v", f.Kind)
		}
	}
}

// drain reads until the client goes away.
func (p *pconn) drain() {
	for {
		if _, err := p.readBody(); err != nil {
			return
		}
	}
}

func encodeMsg(codec string, m proto.Message) []byte {
	var b []byte
	var err error
	if codec == wire.CodecProtobuf {
		b, err = proto.Marshal(m)
	} else {
		b, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	}
	if err != nil {
		panic(err)
	}
	return b
}

func decodeMsg(codec string, b []byte, m proto.Message) error {
	if codec == wire.CodecProtobuf {
		return proto.Unmarshal(b, m)
	}
	return protojson.Unmarshal(b, m)
}
