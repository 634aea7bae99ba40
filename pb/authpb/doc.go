// Package authpb holds the protobuf messages of hearth's built-in auth service,
// generated from proto/hearth/auth/v1/auth.proto.
package authpb
