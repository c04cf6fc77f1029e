package vhostuser

/*
#include <vhostuser/vhostuser.h>
*/
import "C"

import (
	"errors"
	"syscall"
)

// Error is a failure reported by the library: the operation, the errno the
// library returned (as a positive syscall.Errno) and, when the library gave
// one, its detailed message. errors.Is(err, syscall.EBUSY) and the like
// work on it.
type Error struct {
	Op      string        // what was attempted, e.g. "listen"
	Code    syscall.Errno // the library's status code, made positive
	Message string        // the library's detail; empty when it gave none
}

func (e *Error) Error() string {
	s := "vhostuser: " + e.Op + ": "
	if e.Message != "" {
		return s + e.Message
	}
	return s + StatusText(-int(e.Code))
}

// Unwrap returns the errno, so errors.Is and errors.As see it.
func (e *Error) Unwrap() error { return e.Code }

// Errors of the binding itself, found with errors.Is.
var (
	// ErrStaleChain: the chain was already pushed or put back, or the
	// callback that popped it has returned.
	ErrStaleChain = errors.New("vhostuser: descriptor chain used after Push/Unpop or after its callback returned")
	// ErrNotInCallback: a ring operation outside a callback of that ring's queue.
	ErrNotInCallback = errors.New("vhostuser: vring operation outside a callback of its queue")
	// ErrClosed: the daemon was closed.
	ErrClosed = errors.New("vhostuser: daemon is closed")
	// ErrForeignChain: the chain belongs to another vring.
	ErrForeignChain = errors.New("vhostuser: chain was popped from another vring")
)

// StatusText is the library's description of a status code (0 or a
// negative errno).
func StatusText(status int) string { return C.GoString(C.vhu_strerror(C.int(status))) }

// statusError turns a library status into an error: nil for 0 (and for
// positive values, which the library uses for "yes").
func statusError(op string, rc C.int) error {
	if rc >= 0 {
		return nil
	}
	return &Error{Op: op, Code: syscall.Errno(-rc)}
}

// takeError builds the error for a failed call that reported a vhu_error,
// and frees that vhu_error.
func takeError(op string, rc C.int, cerr *C.vhu_error) error {
	defer C.vhu_error_free(cerr)
	if rc >= 0 {
		return nil
	}
	e := &Error{Op: op, Code: syscall.Errno(-rc)}
	if cerr != nil {
		e.Message = C.GoString(C.vhu_error_message(cerr))
		if c := C.vhu_error_code(cerr); c < 0 {
			e.Code = syscall.Errno(-c)
		}
	}
	return e
}

// Status maps an error returned by a Backend hook to the negative errno the
// library expects: 0 for nil, the errno of a syscall.Errno or *Error found
// in the chain of wrapped errors, and -EIO for any other error.
func Status(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) && e.Code != 0 {
		return -int(e.Code)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return -int(errno)
	}
	return -int(syscall.EIO)
}
