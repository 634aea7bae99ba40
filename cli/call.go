package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/wire"
)

// progName is the running binary's name, for help texts: a game's own
// binary is not called hearth.
func progName() string { return filepath.Base(os.Args[0]) }

const callUsage = `Usage: %[1]s call [flags] ROUTE [JSON] [ROUTE [JSON]]...

Opens one session, logs in if asked, sends each request in order (JSON
defaults to {}), prints each result as a line of JSON, prints pushes as
"push ROUTE JSON" lines as they arrive (a push may print before the result
of the call that caused it; --listen waits for more after the last call),
then closes the session. Errors go to stderr as "ROUTE: error CODE (name): message"; the
first failed call stops the rest (exit 1).

  %[1]s call sys.time
  %[1]s call --guest my-phone lobby.profile '{"nickname":"ann"}' lobby.profile
  HEARTH_PASSWORD=… %[1]s call --user ann --listen 10s room.join '{"room":"r1"}'

Flags:
`

// callStep is one request of a call session.
type callStep struct {
	route   string
	payload []byte
}

func call(ctx context.Context, args []string, opts Options) int {
	name := progName()
	fs := flag.NewFlagSet(name+" call", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(opts.Stderr, callUsage, name)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "tcp://localhost:7100", "server address: tcp://, tls://, ws:// or wss://")
	useTLS := fs.Bool("tls", false, "use TLS (tcp:// becomes tls://, ws:// becomes wss://)")
	insecure := fs.Bool("insecure", false, "with TLS, do not verify the server's certificate")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on connecting, logging in, or any one call after this long")
	guest := fs.String("guest", "", "log in first as the guest of this device id (auth.guest)")
	token := fs.String("token", "", "log in first with this session token (auth.token)")
	user := fs.String("user", "", "log in first as this account (auth.login), with --password")
	password := fs.String("password", "", "--user's password (others on this machine may see it: prefer env HEARTH_PASSWORD)")
	listen := fs.Duration("listen", 0, "after the last call, print pushes for this long")
	maxPushes := fs.Int("pushes", 0, "with --listen, stop once this many pushes were printed (0: no limit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	steps, err := parseSteps(fs.Args())
	if err == nil && len(steps) == 0 && *listen == 0 {
		err = errors.New("nothing to do: give a ROUTE, or --listen")
	}
	login, lerr := loginStep(*guest, *token, *user, *password)
	if err == nil {
		err = lerr
	}
	if err != nil {
		fmt.Fprintf(opts.Stderr, "%s call: %v\n\n", name, err)
		fs.Usage()
		return 2
	}

	u := *addr
	var tlsCfg *tls.Config
	if *useTLS || strings.HasPrefix(u, "tls://") || strings.HasPrefix(u, "wss://") {
		u = strings.Replace(strings.Replace(u, "tcp://", "tls://", 1), "ws://", "wss://", 1)
		tlsCfg = &tls.Config{InsecureSkipVerify: *insecure} //nolint:gosec // the user asked for it
	}
	out := &lockedWriter{w: opts.Stdout}
	admitted := make(chan client.Push, 1)
	enough := make(chan struct{}) // closed at the --pushes'th push
	printed := 0                  // owned by the push goroutine
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := client.Dial(dctx, u, client.Options{
		Codec: wire.CodecJSON, TLS: tlsCfg, Name: name + "-call/" + Version,
		OnPush: func(p client.Push) {
			if p.Route == "auth.admitted" {
				select {
				case admitted <- p:
				default: // one is enough to send the login again
				}
			}
			fmt.Fprintf(out, "push %s %s\n", p.Route, p.Payload)
			if printed++; printed == *maxPushes {
				close(enough)
			}
		},
	})
	cancel()
	if err != nil {
		fmt.Fprintf(opts.Stderr, "%s call: cannot connect to %s: %v\n", name, u, err)
		return 1
	}
	defer func() {
		_ = c.Close()
		out.stop() // push handlers may outlive Close
	}()

	if login != nil {
		resp, err := loginQueued(ctx, c, *login, *timeout, admitted)
		if err != nil {
			printCallError(opts.Stderr, login.route, err)
			return 1
		}
		var lr authpb.LoginResp
		if err := c.Decode(resp, &lr); err == nil {
			fmt.Fprintf(opts.Stderr, "logged in as user %s (%s)\n", lr.UserId, lr.Kind)
		}
	}
	for _, st := range steps {
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		res, err := c.RequestRaw(rctx, st.route, st.payload)
		cancel()
		if err != nil {
			printCallError(opts.Stderr, st.route, err)
			return 1
		}
		fmt.Fprintf(out, "%s\n", res)
	}
	if *listen > 0 {
		select {
		case <-time.After(*listen):
		case <-enough:
		case <-c.Done():
			printCallError(opts.Stderr, "session", c.Err())
			return 1
		case <-ctx.Done():
		}
	}
	return 0
}

// parseSteps reads ROUTE [JSON] pairs: a route starts a request, and a JSON
// value after it is its payload. A JSON value is never a valid route.
func parseSteps(args []string) ([]callStep, error) {
	var steps []callStep
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !wire.ValidRoute(a) {
			if json.Valid([]byte(a)) {
				return nil, fmt.Errorf("JSON %s must follow a ROUTE", a)
			}
			return nil, fmt.Errorf("%q is neither a ROUTE (service.method) nor valid JSON", a)
		}
		st := callStep{route: a, payload: []byte("{}")}
		if i+1 < len(args) && !wire.ValidRoute(args[i+1]) {
			if !json.Valid([]byte(args[i+1])) {
				return nil, fmt.Errorf("the payload of %s is not valid JSON: %s", a, args[i+1])
			}
			st.payload = []byte(args[i+1])
			i++
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// loginStep is the auth request the login flags ask for, or nil.
func loginStep(guest, token, user, password string) (*callStep, error) {
	var steps []callStep
	add := func(route string, fields map[string]string) {
		b, _ := json.Marshal(fields) // a map of strings always encodes
		steps = append(steps, callStep{route: route, payload: b})
	}
	if guest != "" {
		add("auth.guest", map[string]string{"device_id": guest})
	}
	if token != "" {
		add("auth.token", map[string]string{"token": token})
	}
	if user != "" {
		if password == "" {
			password = os.Getenv("HEARTH_PASSWORD")
		}
		if password == "" {
			return nil, fmt.Errorf("--user %s: give --password or set HEARTH_PASSWORD", user)
		}
		add("auth.login", map[string]string{"account": user, "password": password})
	}
	switch len(steps) {
	case 0:
		return nil, nil
	case 1:
		return &steps[0], nil
	}
	return nil, errors.New("give at most one of --guest, --token and --user")
}

// loginQueued sends the login, and when the login queue answers 204 waits
// for auth.admitted and sends it again, as docs/protocol.md describes.
func loginQueued(ctx context.Context, c *client.Client, login callStep, timeout time.Duration, admitted <-chan client.Push) ([]byte, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := c.RequestRaw(rctx, login.route, login.payload)
		cancel()
		if !errors.Is(err, &wire.Error{Code: wire.CodeQueued}) {
			return res, err
		}
		select {
		case <-admitted:
		case <-c.Done():
			return nil, c.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func printCallError(w io.Writer, route string, err error) {
	var we *wire.Error
	if !errors.As(err, &we) {
		fmt.Fprintf(w, "%s: %v\n", route, err)
		return
	}
	if name := we.Code.String(); we.Code < wire.CodeApplication && !strings.HasPrefix(name, "code ") {
		fmt.Fprintf(w, "%s: error %d (%s): %s\n", route, we.Code, name, we.Message)
		return
	}
	fmt.Fprintf(w, "%s: error %d: %s\n", route, we.Code, we.Message)
}

// lockedWriter serialises the results printed by the calling goroutine and
// the pushes printed by the client's push goroutine, and drops what comes
// after stop.
type lockedWriter struct {
	mu      sync.Mutex // guards w and stopped
	w       io.Writer
	stopped bool
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return len(p), nil
	}
	return l.w.Write(p)
}

func (l *lockedWriter) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}
