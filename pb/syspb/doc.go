// Package syspb holds the protobuf messages of hearth's built-in sys service,
// generated from proto/hearth/sys/v1/sys.proto.
package syspb
