package cluster

// EventKind is the kind of a session life event (TypeEvent's Status).
type EventKind uint16

const (
	EventOpened EventKind = 1 + iota
	EventClosed
	EventUser // the session was bound to (or unbound from) a user
)

func (k EventKind) String() string {
	switch k {
	case EventOpened:
		return "opened"
	case EventClosed:
		return "closed"
	case EventUser:
		return "user"
	}
	return "unknown"
}
