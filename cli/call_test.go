package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest/authtest"
)

// callNode runs an in-process node with auth and a "me" service for the
// call tests; closed receives the user of every session that ends.
func callNode(t *testing.T) (addr string, closed <-chan string) {
	ended := make(chan string, 64)
	svc := hearth.NewService("me")
	svc.OnSessionEvent(func(_ context.Context, ev hearth.SessionEvent) {
		if ev.Kind == "closed" {
			ended <- ev.User
		}
	})
	hearth.HandleJSON(svc, "who", func(ctx context.Context, s *hearth.Session, _ struct{}) (map[string]string, error) {
		return map[string]string{"user": s.UserID()}, nil
	})
	hearth.HandleJSON(svc, "echo", func(ctx context.Context, s *hearth.Session, req map[string]any) (map[string]any, error) {
		return req, nil
	})
	hearth.HandleJSON(svc, "fail", func(ctx context.Context, s *hearth.Session, _ struct{}) (struct{}, error) {
		return struct{}{}, hearth.NewError(1001, "not your turn")
	})
	node := authtest.Start(t, hearth.Config{}, svc)
	return node.URL("tcp"), ended
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestCallSession(t *testing.T) {
	addr, closed := callNode(t)

	// Several calls in one logged-in session, then pushes until --pushes.
	out, errOut, code := runCall(t, "--addr", addr, "--guest", "dev-1", "--listen", "30s", "--pushes", "2",
		"me.who", "me.echo", `{"n":1}`, "sys.push", `{"count":2}`)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "logged in as user ")
	// Pushes print as they arrive, maybe before the result that caused them.
	var got, pushes []string
	for _, l := range lines(out) {
		if strings.HasPrefix(l, "push ") {
			pushes = append(pushes, l)
		} else {
			got = append(got, l)
		}
	}
	require.Len(t, got, 3, out)
	var who map[string]string
	require.NoError(t, json.Unmarshal([]byte(got[0]), &who))
	require.NotEmpty(t, who["user"])
	require.JSONEq(t, `{"n":1}`, got[1])
	require.JSONEq(t, `{"count":2}`, got[2])
	require.Equal(t, []string{`push sys.tick {"n":1}`, `push sys.tick {"n":2}`}, pushes)
	// The session ended with the command, not after the resume grace.
	select {
	case user := <-closed:
		require.Equal(t, who["user"], user)
	case <-time.After(10 * time.Second):
		t.Fatal("the call's session did not end")
	}

	// The same user by token, and a password account by --user.
	out, errOut, code = runCall(t, "--addr", addr, "auth.guest", `{"device_id":"dev-1"}`)
	require.Equal(t, 0, code, errOut)
	var login struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &login))
	out, errOut, code = runCall(t, "--addr", addr, "--token", login.Token, "me.who")
	require.Equal(t, 0, code, errOut)
	require.JSONEq(t, `{"user":"`+who["user"]+`"}`, out)

	_, errOut, code = runCall(t, "--addr", addr, "auth.register", `{"account":"ann","password":"correct-horse"}`)
	require.Equal(t, 0, code, errOut)
	out, errOut, code = runCall(t, "--addr", addr, "--user", "ann", "--password", "correct-horse", "me.who")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, who["user"])
	t.Setenv("HEARTH_PASSWORD", "wrong-password")
	_, errOut, code = runCall(t, "--addr", addr, "--user", "ann", "me.who")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "auth.login: error 101 (bad credentials)")

	// The first failure stops the rest; without a login the routes are closed.
	out, errOut, code = runCall(t, "--addr", addr, "--guest", "dev-2", "me.echo", `{"a":1}`, "me.fail", "me.echo", `{"b":1}`)
	require.Equal(t, 1, code)
	require.Equal(t, "{\"a\":1}\n", out)
	require.Equal(t, "me.fail: error 1001: not your turn\n", errOut[strings.Index(errOut, "me.fail"):])
	_, errOut, code = runCall(t, "--addr", addr, "me.who")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "me.who: error 100 (unauthenticated)")
}

func TestCallUsage(t *testing.T) {
	name := filepath.Base(os.Args[0])
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-h"}, ""},
		{[]string{}, "nothing to do"},
		{[]string{`{"a":1}`}, "must follow a ROUTE"},
		{[]string{"sys.ping", "{x"}, "not valid JSON"},
		{[]string{"not a route"}, "neither a ROUTE"},
		{[]string{"--guest", "a", "--token", "b", "sys.time"}, "at most one of"},
		{[]string{"--user", "ann", "sys.time"}, "give --password or set HEARTH_PASSWORD"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("HEARTH_PASSWORD", "")
			_, errOut, code := runCall(t, tt.args...)
			if tt.msg == "" {
				require.Equal(t, 0, code)
			} else {
				require.Equal(t, 2, code)
				require.Contains(t, errOut, tt.msg)
			}
			require.Contains(t, errOut, "Usage: "+name+" call ")
			require.NotContains(t, errOut, "hearth call")
		})
	}
}
