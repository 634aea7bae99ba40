package e2e

import (
	"testing"
	"time"

	"github.com/hearth-server/hearth/wire"
)

// The built-in auth service across processes: two gates and one auth node
// (with its SQLite database). A guest logging in on gate B kicks the same
// guest's session on gate A with 104; the token from the first login logs
// a new session in with no password, skipping the queue.
func TestDuplicateLoginAcrossGates(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, nodeSpec{id: "gate-a", roles: "gate"}, nodeSpec{id: "gate-b", roles: "gate"}, nodeSpec{id: "auth-1", roles: "auth,lobby,sys"})
		first := dial(t, c.node("gate-a"), "tcp", "first")
		var login struct {
			UserID string `json:"user_id"`
			Token  string `json:"token"`
		}
		first.must(t, "auth.guest", map[string]string{"device_id": "phone-1"}, &login)
		first.must(t, "lobby.profile", map[string]any{}, nil)

		second := dial(t, c.node("gate-b"), "ws", "second")
		var again struct {
			UserID string `json:"user_id"`
		}
		second.must(t, "auth.guest", map[string]string{"device_id": "phone-1"}, &again)
		if again.UserID != login.UserID {
			t.Fatalf("same device, different users: %s and %s", login.UserID, again.UserID)
		}
		select {
		case <-first.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the first session was not kicked")
		}
		if code := codeOf(first.Err()); code != wire.CodeLoggedInElsewhere {
			t.Fatalf("first session ended with %v, want KICK 104", first.Err())
		}
		second.must(t, "lobby.profile", map[string]any{}, nil)

		// A returning client on the other gate uses the token.
		third := dial(t, c.node("gate-a"), "tcp", "third")
		if err := third.call("lobby.profile", map[string]any{}, nil); codeOf(err) != wire.CodeUnauthenticated {
			t.Fatalf("before login: %v, want 100", err)
		}
		third.must(t, "auth.token", map[string]string{"token": login.Token}, &again)
		if again.UserID != login.UserID {
			t.Fatalf("token logged in %s, want %s", again.UserID, login.UserID)
		}
	})
}
