// Package lobbypb holds the protobuf messages of hearth's built-in lobby service,
// generated from proto/hearth/lobby/v1/lobby.proto.
package lobbypb
