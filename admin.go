package hearth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrAdminNoToken is returned by New for an admin listener that other
// machines can reach (not loopback) without Config.AdminToken.
var ErrAdminNoToken = errors.New("hearth: admin listener reachable from other machines without a token")

// checkAdmin refuses an admin API open to the network: only a loopback
// address may go without a token.
func checkAdmin(addr, token string) error {
	if addr == Off || token != "" || loopbackAddr(addr) {
		return nil
	}
	return fmt.Errorf("%w: %s: set Config.AdminToken, or bind Config.AdminAddr to loopback, e.g. 127.0.0.1:7180", ErrAdminNoToken, addr)
}

// loopbackAddr reports whether host:port listens on loopback only. A host
// name other than "localhost" counts as not loopback: it could resolve to
// anything.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startAdmin serves the operator endpoints:
//
//	/healthz    200 while the process runs                      open
//	/readyz     200 while the node serves, 503 before and while  open
//	            shutting down
//	/metrics    Prometheus metrics (hearth_*, Go runtime, process) open
//	/v1/nodes   the cluster's live nodes                         token, when set
//	/v1/gates   the live gates, least loaded first               token, when set
//	/v1/drain   drain and stop this node                         token, always
//	/debug/pprof/  Go profiles and execution trace (net/http/pprof)  token, when set
//
// The probes and metrics stay open so load balancers and scrapers need no
// secret; they carry aggregate counts only. New refuses a non-loopback
// address without a token, so the /v1 API is never open to the network.
func (n *Node) startAdmin() error {
	ln, err := net.Listen("tcp", n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("hearth: admin listener on %s: %w (is the port in use? set another Config.AdminAddr)", n.cfg.AdminAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.isServing.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /v1/nodes", n.adminAuth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"nodes": nonNil(n.Nodes())})
	}))
	mux.Handle("GET /v1/gates", n.adminAuth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"gates": nonNil(n.Gates())})
	}))
	mux.Handle("POST /v1/drain", n.adminAuth(func(w http.ResponseWriter, _ *http.Request) {
		if n.cfg.AdminToken == "" {
			http.Error(w, "drain needs an admin token (Config.AdminToken): refusing an unauthenticated shutdown", http.StatusForbidden)
			return
		}
		sessions := 0
		if g := n.gate.Load(); g != nil {
			sessions = g.Sessions()
		}
		n.log.Info("drain requested over the admin API", "sessions", sessions)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.DrainTimeout+n.cfg.ShutdownTimeout)
			defer cancel()
			_ = n.Shutdown(ctx)
		}()
		w.WriteHeader(http.StatusAccepted)
		writeJSON(w, map[string]any{"draining": true, "sessions": sessions})
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{Registry: n.metrics}))
	// A live node's profiles and execution trace: what an operator needs
	// to see where a loaded node's time goes without restarting it.
	mux.Handle("GET /debug/pprof/", n.adminAuth(pprof.Index))
	mux.Handle("GET /debug/pprof/profile", n.adminAuth(pprof.Profile))
	mux.Handle("GET /debug/pprof/trace", n.adminAuth(pprof.Trace))
	mux.Handle("GET /debug/pprof/symbol", n.adminAuth(pprof.Symbol))
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.mu.Lock()
	n.addrs["admin"] = ln.Addr()
	n.mu.Unlock()
	go func() {
		if err := n.admin.Serve(ln); err != nil && err != http.ErrServerClosed {
			n.log.Error("admin server failed", "err", err)
		}
	}()
	return nil
}

// adminAuth requires Config.AdminToken, when set, as a bearer token.
func (n *Node) adminAuth(h http.HandlerFunc) http.Handler {
	want := []byte("Bearer " + n.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			n.log.Warn("admin API: bad or missing token", "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "admin token required: send Authorization: Bearer <token>", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
