package hearthtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy relays TCP connections to a target — a gate's client listener, a
// NATS server — and fails them on demand, as a network does: Cut drops
// every connection without a word (no BYE, no FIN from the peer's side of
// the protocol) and refuses new ones until Restore; Pause stops reading
// what clients send, so the client's socket buffers fill and its writes
// block, as with a peer starved of CPU, until Pause(false).
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex    // guards the fields below
	conns  []net.Conn    // both ends of every relayed connection
	down   bool          // between Cut and Restore
	resume chan struct{} // closed unless paused
}

// NewProxy listens on 127.0.0.1 and relays to target (host:port) until the
// test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hearthtest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: target, resume: make(chan struct{})}
	close(p.resume)
	t.Cleanup(func() {
		_ = ln.Close()
		p.Pause(false)
		p.Cut()
	})
	go p.accept()
	return p
}

// Addr is the proxy's host:port, to dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		// Checked under mu, so a Cut racing this accept cannot leave the
		// connection up.
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = in.Close()
			_ = out.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go p.relay(out, in)
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	}
}

// relay copies what the client sends to the target. While paused it
// holds what it read last (a read may be under way when Pause is called)
// and reads no more.
func (p *Proxy) relay(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		wait := p.resume
		p.mu.Unlock()
		<-wait
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Cut closes every relayed connection, as a lost network would, and
// refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Restore accepts connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// Pause stops (true) or resumes (false) reading what clients send.
func (p *Proxy) Pause(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resume: // running
		if paused {
			p.resume = make(chan struct{})
		}
	default: // paused
		if !paused {
			close(p.resume)
		}
	}
}
