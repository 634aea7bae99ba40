package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/internal/testcluster"
)

// hearthBin is cmd/hearth, built by TestMain.
var hearthBin string

func TestMain(m *testing.M) { os.Exit(testcluster.RunWithBinary(m, "../cmd/hearth", &hearthBin)) }

// startServe runs `hearth serve` as a separate process, stopped when the
// test ends, and returns the listener URLs it printed by name (tcp, ws,
// admin).
func startServe(t *testing.T, env []string, args ...string) map[string]string {
	t.Helper()
	base := []string{"serve", "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "warn"}
	p, err := testcluster.StartProc(context.Background(), testcluster.ProcConfig{
		Binary: hearthBin, Args: append(base, args...), Env: env, ReadyTimeout: 15 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Stop(10*time.Second)) })
	return map[string]string{"tcp": p.TCP, "ws": p.WS, "admin": p.Admin}
}

func runCall(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code = Main(ctx, append([]string{"call"}, args...), Options{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

func TestServeAndCall(t *testing.T) {
	urls := startServe(t, nil)
	require.True(t, strings.HasPrefix(urls["tcp"], "tcp://127.0.0.1:"), urls)
	require.True(t, strings.HasPrefix(urls["ws"], "ws://127.0.0.1:"), urls)
	require.True(t, strings.HasSuffix(urls["ws"], "/ws"), urls)
	require.Contains(t, urls, "admin")

	for _, addr := range []string{urls["tcp"], urls["ws"]} {
		t.Run(addr[:strings.Index(addr, ":")], func(t *testing.T) {
			out, errOut, code := runCall(t, "--addr", addr, "sys.ping", `{"hello":"world"}`)
			require.Equal(t, 0, code, errOut)
			require.JSONEq(t, `{"hello":"world"}`, out)

			out, errOut, code = runCall(t, "--addr", addr, "sys.time")
			require.Equal(t, 0, code, errOut)
			var tr struct {
				ServerTimeMS int64 `json:"server_time_ms"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &tr))
			require.InDelta(t, time.Now().UnixMilli(), tr.ServerTimeMS, 60_000)

			_, errOut, code = runCall(t, "--addr", addr, "sys.nosuch")
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "error 300")

			// Before login only sys.* and auth.* are open.
			_, errOut, code = runCall(t, "--addr", addr, "ghost.call")
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "error 100")
			_, errOut, code = runCall(t, "--addr", addr, "lobby.profile")
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "error 100")

			// A guest login works through hearth call (JSON field names as documented).
			out, errOut, code = runCall(t, "--addr", addr, "auth.guest", `{"device_id":"cli-test-device"}`)
			require.Equal(t, 0, code, errOut)
			var login struct {
				UserID string `json:"user_id"`
				Token  string `json:"token"`
				Kind   string `json:"kind"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &login))
			require.NotEmpty(t, login.UserID)
			require.NotEmpty(t, login.Token)
			require.Equal(t, "guest", login.Kind)

			_, errOut, code = runCall(t, "--addr", addr, "sys.push", `{"count":0}`)
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "error 400")
		})
	}

	// The admin port serves health, readiness and metrics.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "hearth_request_duration_seconds_bucket"} {
		body := httpGet(t, urls["admin"]+path)
		require.Contains(t, body, want, path)
	}
}

// With --require-login=false every route is open: a service nobody runs is 301.
func TestServeOpenRoutes(t *testing.T) {
	urls := startServe(t, nil, "--require-login=false")
	_, errOut, code := runCall(t, "--addr", urls["tcp"], "ghost.call")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "error 301")
}

func TestCallErrors(t *testing.T) {
	_, errOut, code := runCall(t, "--addr", "tcp://127.0.0.1:1", "--timeout", "2s", "sys.time")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot connect")

	_, errOut, code = runCall(t, "sys.ping", "{not json")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "not valid JSON")

	_, _, code = runCall(t)
	require.Equal(t, 2, code)
}

// Settings come from flags, then HEARTH_* variables, then the config file.
func TestServeConfigSources(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "hearth.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("node-id: from-file\nroles: [gate, sys]\nheartbeat: 2s\n"), 0o600))
	urls := startServe(t, []string{"HEARTH_CONFIG=" + cfgFile, "HEARTH_HEARTBEAT=3s"})
	var out bytes.Buffer
	// The handshake-ack carries the node id and heartbeat the server runs with.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialJSON(t, ctx, urls["tcp"])
	require.Equal(t, "from-file", c.Node)
	require.EqualValues(t, 3000, c.HeartbeatMS, "env must win over the file")
	_ = out

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("no-such-flag: 1\n"), 0o600))
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--config", bad}, Options{Stdout: io.Discard, Stderr: &errb})
	require.Equal(t, 2, code)
	require.Contains(t, errb.String(), `unknown key "no-such-flag"`)
}

// TLS on both listeners: hearth call --tls reaches the server over TCP and WS.
func TestServeTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t)
	urls := startServe(t, nil, "--tls-cert", certFile, "--tls-key", keyFile)
	require.True(t, strings.HasPrefix(urls["tcp"], "tls://"), urls)
	require.True(t, strings.HasPrefix(urls["ws"], "wss://"), urls)
	for _, addr := range []string{urls["tcp"], urls["ws"]} {
		out, errOut, code := runCall(t, "--addr", addr, "--insecure", "sys.ping", `{"tls":true}`)
		require.Equal(t, 0, code, errOut)
		require.JSONEq(t, `{"tls":true}`, out)
	}
	// Without TLS the handshake cannot succeed.
	plain := strings.Replace(urls["tcp"], "tls://", "tcp://", 1)
	_, _, code := runCall(t, "--addr", plain, "--timeout", "3s", "sys.ping")
	require.Equal(t, 1, code)
}

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}
