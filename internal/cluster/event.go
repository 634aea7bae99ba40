package cluster

// EventKind is the kind of a session life event (TypeEvent's Status).
type EventKind uint16

const (
	EventOpened EventKind = 1 + iota
	EventClosed
	EventUser    // the session was bound to (or unbound from) a user
	EventOffline // the connection dropped; the session can still be resumed
	EventResumed // a client resumed the session (on this or another gate)
)

func (k EventKind) String() string {
	switch k {
	case EventOpened:
		return "opened"
	case EventClosed:
		return "closed"
	case EventUser:
		return "user"
	case EventOffline:
		return "offline"
	case EventResumed:
		return "resumed"
	}
	return "unknown"
}
