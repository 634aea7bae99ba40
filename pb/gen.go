// Package pb holds the protobuf messages of hearth's built-in services,
// generated from proto/ and committed so that building needs no protoc.
//
// Regenerate with: go generate ./pb
package pb

//go:generate protoc -I ../proto --go_out=.. --go_opt=module=github.com/hearth-server/hearth ../proto/hearth/sys/v1/sys.proto ../proto/hearth/auth/v1/auth.proto ../proto/hearth/lobby/v1/lobby.proto ../proto/hearth/room/v1/room.proto ../proto/hearth/match/v1/match.proto
