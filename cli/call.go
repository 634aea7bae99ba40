package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

func call(ctx context.Context, args []string, opts Options) int {
	fs := flag.NewFlagSet("hearth call", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(opts.Stderr, "Usage: hearth call --addr tcp://HOST:PORT|ws://HOST:PORT/ws [--tls] ROUTE ['JSON']")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "tcp://localhost:7100", "server address: tcp://, tls://, ws:// or wss://")
	useTLS := fs.Bool("tls", false, "use TLS (tcp:// becomes tls://, ws:// becomes wss://)")
	insecure := fs.Bool("insecure", false, "with TLS, do not verify the server's certificate")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	route, payload := fs.Arg(0), "{}"
	if fs.NArg() == 2 {
		payload = fs.Arg(1)
	}
	if !json.Valid([]byte(payload)) {
		fmt.Fprintf(opts.Stderr, "hearth call: the payload is not valid JSON: %s\n", payload)
		return 2
	}
	u := *addr
	var tlsCfg *tls.Config
	if *useTLS || strings.HasPrefix(u, "tls://") || strings.HasPrefix(u, "wss://") {
		u = strings.Replace(strings.Replace(u, "tcp://", "tls://", 1), "ws://", "wss://", 1)
		tlsCfg = &tls.Config{InsecureSkipVerify: *insecure} //nolint:gosec // the user asked for it
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, u, client.Options{Codec: wire.CodecJSON, TLS: tlsCfg, Name: "hearth-call/" + Version})
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth call: cannot connect to %s: %v\n", u, err)
		return 1
	}
	defer c.Close()
	out, err := c.RequestRaw(ctx, route, []byte(payload))
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			fmt.Fprintf(opts.Stderr, "error %d (%s): %s\n", we.Code, we.Code, we.Message)
		} else {
			fmt.Fprintf(opts.Stderr, "hearth call: %v\n", err)
		}
		return 1
	}
	fmt.Fprintln(opts.Stdout, string(out))
	return 0
}
