package vhostuser

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain fails the run if any test left a callback handle behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := LiveHandles(); n != 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d callback handle(s) still held by the library after all tests\n", n)
		code = 1
	}
	os.Exit(code)
}

func TestStatusMapsErrorsToNegativeErrno(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"errno", syscall.EPERM, -int(syscall.EPERM)},
		{"wrapped errno", fmt.Errorf("config: %w", syscall.ENOSPC), -int(syscall.ENOSPC)},
		{"library error", &Error{Op: "x", Code: syscall.EBUSY}, -int(syscall.EBUSY)},
		{"wrapped library error", fmt.Errorf("a: %w", &Error{Op: "x", Code: syscall.EFAULT}), -int(syscall.EFAULT)},
		{"plain error", errors.New("something"), -int(syscall.EIO)},
		{"zero errno", syscall.Errno(0), -int(syscall.EIO)},
		{"fs error", &fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, -int(syscall.ENOENT)},
	}
	for _, c := range cases {
		if got := Status(c.err); got != c.want {
			t.Errorf("%s: Status(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}

func TestErrorWrapsErrno(t *testing.T) {
	e := &Error{Op: "listen /x", Code: syscall.EADDRINUSE, Message: "detail from the library"}
	if !errors.Is(e, syscall.EADDRINUSE) {
		t.Errorf("errors.Is(%v, EADDRINUSE) is false", e)
	}
	var errno syscall.Errno
	if !errors.As(fmt.Errorf("wrapped: %w", e), &errno) || errno != syscall.EADDRINUSE {
		t.Errorf("errors.As found errno %v, want EADDRINUSE", errno)
	}
	if got, want := e.Error(), "vhostuser: listen /x: detail from the library"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// Without a message the library's description of the code is used.
	e2 := &Error{Op: "pop", Code: syscall.EIO}
	if got := e2.Error(); got != "vhostuser: pop: "+StatusText(-int(syscall.EIO)) || !strings.Contains(strings.ToLower(got), "i/o") {
		t.Errorf("Error() = %q, want the description of EIO", got)
	}
	if StatusText(0) == "" || StatusText(-int(syscall.ENOTCONN)) == "" {
		t.Error("StatusText returned an empty string")
	}
	if !errors.Is(&Error{Op: "open", Code: syscall.ENOENT}, fs.ErrNotExist) {
		t.Error("an ENOENT Error is not fs.ErrNotExist")
	}
}

func TestLibraryErrorsCarryMessageAndCode(t *testing.T) {
	base := LiveHandles()
	// Rejected by the library (not a power of two): the handle is released
	// by the destructor callback although no daemon exists.
	_, err := NewDaemon(&nopBackend{}, Options{NumQueues: 1, MaxQueueSize: 3})
	var e *Error
	if !errors.As(err, &e) || e.Code != syscall.EINVAL || !strings.Contains(e.Message, "max_queue_size") {
		t.Fatalf("NewDaemon(MaxQueueSize 3) = %v, want EINVAL with the library's message", err)
	}
	if n := LiveHandles(); n != base {
		t.Errorf("after a failed NewDaemon %d handles live, want %d", n, base)
	}
	// Rejected by the binding before the library is called.
	if _, err := NewDaemon(&nopBackend{}, Options{NumQueues: 0}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("NewDaemon(NumQueues 0) = %v, want EINVAL", err)
	}
	if _, err := NewDaemon(nil, Options{NumQueues: 1}); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("NewDaemon(nil) = %v, want EINVAL", err)
	}

	d, err := NewDaemon(&nopBackend{}, Options{NumQueues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetWorkers(65); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("SetWorkers(65) = %v, want EINVAL", err)
	}
	if err := d.AssignQueue(7, 0); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("AssignQueue(7, 0) on 2 queues = %v, want EINVAL", err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir", "s.sock")
	err = d.Listen(missing)
	if !errors.As(err, &e) || e.Code != syscall.ENOENT || e.Message == "" || !strings.Contains(e.Error(), "listen") {
		t.Errorf("Listen(%s) = %#v, want ENOENT with a message", missing, err)
	}
	if err := d.Run(); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("Run without an endpoint = %v, want ENOTCONN", err)
	}
	if d.Vring(2) != nil || d.Vring(-1) != nil || d.Vring(1).Index() != 1 || d.NumQueues() != 2 {
		t.Error("Vring/NumQueues do not match the 2 queues")
	}
	major, minor, patch := Version()
	if major < 0 || minor < 0 || patch < 0 || major+minor+patch == 0 {
		t.Errorf("Version() = %d.%d.%d", major, minor, patch)
	}
}

func TestRingCallsOutsideCallbacksAreRejected(t *testing.T) {
	d, err := NewDaemon(&nopBackend{}, Options{NumQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vr := d.Vring(0)
	if c, err := vr.Pop(); c != nil || !errors.Is(err, ErrNotInCallback) {
		t.Errorf("Pop outside a callback = %v, %v; want ErrNotInCallback", c, err)
	}
	if _, err := vr.Notify(); !errors.Is(err, ErrNotInCallback) {
		t.Errorf("Notify outside a callback = %v; want ErrNotInCallback", err)
	}
	if err := vr.SetKicks(true); !errors.Is(err, ErrNotInCallback) {
		t.Errorf("SetKicks outside a callback = %v; want ErrNotInCallback", err)
	}
	if vr.Pending() || vr.IsStarted() || vr.Size() != 0 {
		t.Error("an idle queue claims to be pending, started or sized")
	}
	if _, err := vr.Stats(); err != nil {
		t.Errorf("Stats: %v", err)
	}
}

func TestCloseReleasesHandle(t *testing.T) {
	base := LiveHandles()
	var ds []*Daemon
	for i := 0; i < 5; i++ {
		d, err := NewDaemon(&nopBackend{}, Options{NumQueues: 1 + i})
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if n := LiveHandles(); n != base+5 {
		t.Fatalf("%d handles live with 5 daemons, want %d", n, base+5)
	}
	for _, d := range ds {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil { // twice is a no-op
			t.Fatal(err)
		}
	}
	if n := LiveHandles(); n != base {
		t.Errorf("%d handles live after Close, want %d", n, base)
	}
	if err := ds[0].Listen("/tmp/x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Listen after Close = %v, want ErrClosed", err)
	}
	ds[0].Stop() // a no-op, must not crash
}

// nopBackend serves nothing: it only satisfies Backend.
type nopBackend struct{}

func (*nopBackend) Features() uint64      { return DefaultFeatures }
func (*nopBackend) HandleQueue(vr *Vring) {}
