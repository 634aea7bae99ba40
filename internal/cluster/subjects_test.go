package cluster

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateNodeID(t *testing.T) {
	for id, ok := range map[string]bool{
		"node-1": true, "A_b-9": true, "": false, "a.b": false, "a*": false, "a>": false, "a b": false,
		string(make([]byte, 65)): false,
	} {
		require.Equal(t, ok, ValidateNodeID(id) == nil, "%q", id)
	}
}

func TestValidateChannel(t *testing.T) {
	for ch, ok := range map[string]bool{
		"lobby": true, "room.niuniu.42": true, "user:7": true, "": false, ".a": false, "a.": false,
		"a..b": false, "a.*": false, "a.>": false, "a b": false, "é": false,
	} {
		require.Equal(t, ok, ValidateChannel(ch) == nil, "%q", ch)
	}
}

func TestReplyID(t *testing.T) {
	s := Subjects{Prefix: "hearth"}
	prefix := s.GateReplyPrefix("g1")
	for _, id := range []uint64{0, 1, 35, 36, 1 << 40, ^uint64(0)} {
		subj := string(AppendReplyID([]byte(prefix), id))
		got, ok := ParseReplyID(subj, prefix)
		require.True(t, ok)
		require.Equal(t, id, got)
	}
	for _, bad := range []string{"hearth.gate.g1.c", "hearth.gate.g2.r.1", prefix, prefix + "!"} {
		_, ok := ParseReplyID(bad, prefix)
		require.False(t, ok, bad)
	}
	require.Equal(t, "hearth.svc.room", s.Service("room"))
	require.Equal(t, "hearth.node.n1.room", s.NodeService("n1", "room"))
	require.Equal(t, "hearth.gate.g1.>", s.GateAll("g1"))
}
