package hearth

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startAdmin serves the operator endpoints:
//
//	/healthz  200 while the process runs
//	/readyz   200 while the node serves, 503 before and while shutting down
//	/metrics  Prometheus metrics (hearth_*, Go runtime, process)
func (n *Node) startAdmin() error {
	ln, err := net.Listen("tcp", n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("hearth: admin listener on %s: %w (is the port in use? pick another with --admin)", n.cfg.AdminAddr, err)
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
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
