package cluster

import (
	"errors"
	"strconv"
)

// Subjects names every bus subject under one prefix (default "hearth").
//
//	<p>.svc.<service>          queue group <service>: requests to any instance
//	<p>.node.<node>.<service>  requests for sessions bound to that node
//	<p>.gate.<gate>.c          pushes, kicks, binds, joins for that gate's sessions
//	<p>.gate.<gate>.r.<id>     the reply to request <id> of that gate
//	<p>.gate.<gate>.resume     requests to hand over a session (resume)
//	<p>.ch.<channel>           channel publishes, to gates with a local member
//	<p>.all                    broadcasts to every session of every gate
//	<p>.evt.session            session life events
//
// A gate's control and reply subjects share one wildcard subscription, so a
// service's bind or push that precedes its response is applied first.
type Subjects struct{ Prefix string }

func (s Subjects) Service(service string) string { return s.Prefix + ".svc." + service }
func (s Subjects) NodeService(node, service string) string {
	return s.Prefix + ".node." + node + "." + service
}
func (s Subjects) GateControl(gate string) string { return s.Prefix + ".gate." + gate + ".c" }
func (s Subjects) GateAll(gate string) string     { return s.Prefix + ".gate." + gate + ".>" }

// GateResume is where a gate answers requests to hand over a session.
func (s Subjects) GateResume(gate string) string { return s.Prefix + ".gate." + gate + ".resume" }

// GateReplyPrefix is the reply subject of a gate's requests without the id.
func (s Subjects) GateReplyPrefix(gate string) string { return s.Prefix + ".gate." + gate + ".r." }
func (s Subjects) Channel(channel string) string      { return s.Prefix + ".ch." + channel }
func (s Subjects) Broadcast() string                  { return s.Prefix + ".all" }
func (s Subjects) Events() string                     { return s.Prefix + ".evt.session" }

// ParseReplyID extracts the request id from a reply subject, given the
// gate's reply prefix.
func ParseReplyID(subject, prefix string) (uint64, bool) {
	if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
		return 0, false
	}
	id, err := strconv.ParseUint(subject[len(prefix):], 36, 64)
	return id, err == nil
}

// AppendReplyID appends a request id in the form ParseReplyID reads.
func AppendReplyID(dst []byte, id uint64) []byte { return strconv.AppendUint(dst, id, 36) }

var (
	errBadNodeID  = errors.New("node id must be 1–64 characters of a–z, A–Z, 0–9, '-' and '_'")
	errBadChannel = errors.New("channel name must be 1–128 characters of a–z, A–Z, 0–9, '-', '_', ':' and non-empty '.'-separated parts")
	errBadPrefix  = errors.New("subject prefix must be a valid channel-style name")
)

// ValidateNodeID checks a node id before it becomes part of a subject.
func ValidateNodeID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return errBadNodeID
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return errBadNodeID
		}
	}
	return nil
}

// ValidateChannel checks a channel name before it becomes part of a subject:
// dots separate subject tokens, so empty tokens and wildcards are refused.
func ValidateChannel(ch string) error {
	if len(ch) == 0 || len(ch) > 128 || ch[0] == '.' || ch[len(ch)-1] == '.' {
		return errBadChannel
	}
	for i := 0; i < len(ch); i++ {
		c := ch[i]
		if c == '.' {
			if ch[i-1] == '.' {
				return errBadChannel
			}
			continue
		}
		if !idChar(c) && c != ':' {
			return errBadChannel
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
