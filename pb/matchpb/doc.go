// Package matchpb holds the protobuf messages of hearth's built-in match service,
// generated from proto/hearth/match/v1/match.proto.
package matchpb
