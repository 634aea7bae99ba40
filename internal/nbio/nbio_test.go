//go:build unix

package nbio_test

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/hearth-server/hearth/internal/nbio"
)

func TestReadWriteNonBlocking(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fds[1]) })
	for _, fd := range fds {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	if n, err := nbio.Read(fds[1], buf); n != 0 || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("read of an empty socket = %d, %v; want 0, EAGAIN", n, err)
	}
	if n, err := nbio.Write(fds[0], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write = %d, %v; want 5, nil", n, err)
	}
	n, err := nbio.Read(fds[1], buf)
	if err != nil || !bytes.Equal(buf[:n], []byte("hello")) {
		t.Fatalf("read = %q, %v; want \"hello\"", buf[:n], err)
	}
	if err := syscall.Close(fds[0]); err != nil { // the writer's end, closed once
		t.Fatal(err)
	}
	if n, err := nbio.Read(fds[1], buf); n != 0 || err != nil {
		t.Fatalf("read after the peer closed = %d, %v; want 0, nil (end of file)", n, err)
	}
	if _, err := nbio.Write(-1, buf); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("write to a bad descriptor: %v, want EBADF", err)
	}
}
