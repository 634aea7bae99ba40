// Package roompb holds the protobuf messages the room SDK sends,
// generated from proto/hearth/room/v1/room.proto.
package roompb
