package vhostuser

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// vhuCheck finds the project's conformance checker: $VHU_PREFIX/bin first
// (test.sh sets it to the install prefix), then $PATH.
func vhuCheck(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VHU_PREFIX"); p != "" {
		bin := filepath.Join(p, "bin", "vhu-check")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("VHU_PREFIX=%s has no bin/vhu-check: %v", p, err)
		}
		return bin
	}
	bin, err := exec.LookPath("vhu-check")
	if err != nil {
		t.Fatal("vhu-check not found: set VHU_PREFIX to the library's install prefix")
	}
	return bin
}

// serve starts d on a fresh socket and runs vhu-check with args against it.
// It stops and closes d afterwards and returns the checker's output and
// exit status.
func serve(t *testing.T, d *Daemon, args ...string) (string, int) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "backend.sock")
	if err := d.Listen(sock); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vhuCheck(t), append([]string{"--socket-path=" + sock}, args...)...)
	out, err := cmd.CombinedOutput()
	status := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running vhu-check: %v", err)
	}
	d.Stop()
	if err := d.Wait(); err != nil {
		t.Errorf("Wait after Stop: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s still exists after Close (%v)", sock, err)
	}
	return string(out), status
}

var summaryRe = regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`)

// requireAllPassed checks vhu-check's summary: at least min passed, 0 failed.
func requireAllPassed(t *testing.T, out string, status, min int) {
	t.Helper()
	m := summaryRe.FindStringSubmatch(out)
	if status != 0 || m == nil || m[2] != "0" {
		t.Fatalf("vhu-check exit status %d, summary %q; output:\n%s", status, m, out)
	}
	if n, _ := strconv.Atoi(m[1]); n < min {
		t.Fatalf("vhu-check passed only %d checks, want at least %d; output:\n%s", n, min, out)
	}
	t.Logf("vhu-check: %s", m[0])
}

// fillBackend fills every writable buffer with 0x5a, like an rng device,
// and counts its hooks.
type fillBackend struct {
	chains, bytes                    atomic.Int64
	started, stopped, memory, resets atomic.Int64
	acked                            atomic.Uint64
}

func (b *fillBackend) Features() uint64 { return DefaultFeatures }

func (b *fillBackend) HandleQueue(vr *Vring) {
	for {
		ch, err := vr.Pop()
		if ch == nil {
			if err != nil && !errors.Is(err, syscall.EIO) {
				panic(err)
			}
			break
		}
		n := 0
		for _, buf := range ch.Writable() {
			for i := range buf {
				buf[i] = 0x5a
			}
			n += len(buf)
		}
		if n != ch.WritableLen() {
			panic("writable slices do not add up to WritableLen")
		}
		if err := vr.Push(ch, n); err != nil && !errors.Is(err, syscall.ENOTCONN) {
			panic(err)
		}
		b.chains.Add(1)
		b.bytes.Add(int64(n))
	}
	if _, err := vr.Notify(); err != nil && !errors.Is(err, syscall.ENOTCONN) {
		panic(err)
	}
}

func (b *fillBackend) QueueStarted(vr *Vring) {
	b.started.Add(1)
	if !vr.InCallback() {
		panic("InCallback false inside QueueStarted")
	}
}
func (b *fillBackend) QueueStopped(vr *Vring) { b.stopped.Add(1) }
func (b *fillBackend) MemoryChanged()         { b.memory.Add(1) }
func (b *fillBackend) DeviceReset()           { b.resets.Add(1) }
func (b *fillBackend) FeaturesAcked(f uint64) error {
	b.acked.Store(f)
	return nil
}

func TestVhuCheckAgainstGoBackend(t *testing.T) {
	base := LiveHandles()
	b := &fillBackend{}
	d, err := NewDaemon(b, Options{NumQueues: 1, MaxQueueSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logs []string
	if err := d.SetLog(func(l LogLevel, m string) {
		logMu.Lock()
		logs = append(logs, l.String()+": "+m)
		logMu.Unlock()
	}, LogInfo); err != nil {
		t.Fatal(err)
	}
	if n := LiveHandles(); n != base+1 {
		t.Errorf("%d handles live with the daemon open, want %d", n, base+1)
	}
	out, status := serve(t, d)
	requireAllPassed(t, out, status, 15)
	if n := LiveHandles(); n != base {
		t.Errorf("%d handles live after Close, want %d", n, base)
	}
	t.Logf("chains %d, bytes %d, started %d, stopped %d, memory %d, resets %d",
		b.chains.Load(), b.bytes.Load(), b.started.Load(), b.stopped.Load(), b.memory.Load(), b.resets.Load())
	if b.chains.Load() == 0 || b.bytes.Load() == 0 {
		t.Error("the handler completed no chains")
	}
	if b.started.Load() == 0 || b.stopped.Load() == 0 || b.memory.Load() == 0 || b.resets.Load() == 0 {
		t.Error("an optional hook was never called")
	}
	if b.acked.Load()&FeatureVersion1 == 0 {
		t.Errorf("FeaturesAcked saw %#x, without VERSION_1", b.acked.Load())
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(strings.Join(logs, "\n"), "error: ") {
		t.Errorf("the log callback got no error messages (vhu-check sends bad requests): %q", logs)
	}
}

func TestVhuCheckWithWorkersAndPolling(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		poll    bool
	}{{"control-thread", 0, false}, {"two-workers-poll", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fillBackend{}
			d, err := NewDaemon(b, Options{NumQueues: 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.SetWorkers(tc.workers); err != nil {
				t.Fatal(err)
			}
			if tc.workers > 1 {
				if err := d.AssignQueue(1, 1); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.SetPoll(tc.poll); err != nil {
				t.Fatal(err)
			}
			out, status := serve(t, d, "--queues=2", "--only=io-round-trip,vring-base-stop,ring-restart,session-isolation")
			requireAllPassed(t, out, status, 4)
			if b.chains.Load() == 0 {
				t.Error("the handler completed no chains")
			}
		})
	}
}

// lifetimeBackend checks, in every handler call, that the chains kept from
// earlier calls are rejected, and exercises Unpop.
type lifetimeBackend struct {
	kept                          []*Chain // only touched by the queue's thread
	staleRejected, unpops, panics atomic.Int64
	failures                      atomic.Value // string
}

func (b *lifetimeBackend) Features() uint64 { return DefaultFeatures }

func (b *lifetimeBackend) fail(msg string) { b.failures.CompareAndSwap(nil, msg) }

func (b *lifetimeBackend) HandleQueue(vr *Vring) {
	for _, old := range b.kept {
		if old.Valid() {
			b.fail("a chain from an earlier call is still valid")
		}
		if err := vr.Push(old, 0); !errors.Is(err, ErrStaleChain) {
			b.fail("Push of an earlier call's chain: " + errString(err))
		}
		if err := vr.Unpop(old); !errors.Is(err, ErrStaleChain) {
			b.fail("Unpop of an earlier call's chain: " + errString(err))
		}
		if _, err := old.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrStaleChain) {
			b.fail("ReadAt of an earlier call's chain: " + errString(err))
		}
		if _, err := old.WriteAt([]byte{1}, 0); !errors.Is(err, ErrStaleChain) {
			b.fail("WriteAt of an earlier call's chain: " + errString(err))
		}
		if !panics(func() { old.Writable() }) || !panics(func() { old.Head() }) {
			b.fail("Writable/Head of an earlier call's chain did not panic")
		} else {
			b.panics.Add(1)
		}
		b.staleRejected.Add(1)
	}
	b.kept = b.kept[:0]
	for {
		ch, err := vr.Pop()
		if ch == nil {
			if err != nil && !errors.Is(err, syscall.EIO) {
				b.fail("Pop: " + err.Error())
			}
			break
		}
		head := ch.Head()
		if err := vr.Unpop(ch); err != nil {
			b.fail("Unpop: " + err.Error())
			break
		}
		if err := vr.Unpop(ch); !errors.Is(err, ErrStaleChain) {
			b.fail("a second Unpop: " + errString(err))
		}
		again, err := vr.Pop()
		if again == nil || again.Head() != head {
			b.fail("Pop after Unpop did not return the same chain: " + errString(err))
			break
		}
		b.unpops.Add(1)
		pat := make([]byte, again.WritableLen())
		for i := range pat {
			pat[i] = byte(i)
		}
		if n, err := again.WriteAt(pat, 0); n != len(pat) || err != nil {
			b.fail("WriteAt: " + errString(err))
		}
		if _, err := again.WriteAt([]byte{1}, int64(len(pat))); !errors.Is(err, io.ErrShortWrite) {
			b.fail("WriteAt past the end: " + errString(err))
		}
		if err := vr.Push(again, len(pat)); err != nil && !errors.Is(err, syscall.ENOTCONN) {
			b.fail("Push: " + err.Error())
		}
		if err := vr.Push(again, 0); !errors.Is(err, ErrStaleChain) {
			b.fail("a second Push: " + errString(err))
		}
		b.kept = append(b.kept, again, ch)
	}
	if _, err := vr.Notify(); err != nil && !errors.Is(err, syscall.ENOTCONN) {
		b.fail("Notify: " + err.Error())
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func panics(f func()) (did bool) {
	defer func() {
		if r := recover(); r != nil {
			did = strings.Contains(r.(string), "descriptor chain used after")
		}
	}()
	f()
	return false
}

func TestChainLifetime(t *testing.T) {
	b := &lifetimeBackend{}
	d, err := NewDaemon(b, Options{NumQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, status := serve(t, d, "--only=io-round-trip,vring-base-stop,ring-restart,session-isolation,reset-device")
	requireAllPassed(t, out, status, 5)
	if f := b.failures.Load(); f != nil {
		t.Fatalf("in the handler: %s", f)
	}
	t.Logf("unpop+pop round trips %d, stale chains rejected %d", b.unpops.Load(), b.staleRejected.Load())
	if b.unpops.Load() == 0 || b.staleRejected.Load() == 0 || b.panics.Load() != b.staleRejected.Load() {
		t.Fatalf("unpops %d, stale chains rejected %d (panicked %d): the checks did not run",
			b.unpops.Load(), b.staleRejected.Load(), b.panics.Load())
	}
	// Outside any callback the kept chains are stale too.
	for _, c := range b.kept {
		if _, err := c.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrStaleChain) {
			t.Errorf("ReadAt after the daemon closed: %v", err)
		}
	}
}

func TestStopBeforeRunAndCloseWhileIdle(t *testing.T) {
	base := LiveHandles()
	d, err := NewDaemon(&nopBackend{}, Options{NumQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	if err := d.Listen(sock); err != nil {
		t.Fatal(err)
	}
	if err := d.Listen(sock); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("a second Listen = %v, want EBUSY", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run() }()
	deadline := time.Now().Add(3 * time.Second)
	for {
		d.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after Stop = %v", err)
			}
			d.Close()
			if n := LiveHandles(); n != base {
				t.Errorf("%d handles live after Close, want %d", n, base)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not return after Stop")
		}
	}
}

// leaveBackend leaves every chain it pops for the first time (the binding
// puts it back when the handler returns) and serves it when it comes
// again; polling makes the library call the handler again for it.
type leaveBackend struct {
	left              map[uint16]*Chain // only touched by the queue's thread
	leftCount, served atomic.Int64
	failures          atomic.Value // string
}

func (b *leaveBackend) Features() uint64 { return DefaultFeatures }

func (b *leaveBackend) HandleQueue(vr *Vring) {
	ch, err := vr.Pop()
	if ch == nil {
		if err != nil && !errors.Is(err, syscall.EIO) {
			b.failures.CompareAndSwap(nil, "Pop: "+err.Error())
		}
		return
	}
	if old, ok := b.left[ch.Head()]; ok {
		delete(b.left, ch.Head())
		if old.Valid() {
			b.failures.CompareAndSwap(nil, "a chain left in an earlier call is still valid")
		}
		if err := vr.Push(ch, ch.WritableLen()); err != nil && !errors.Is(err, syscall.ENOTCONN) {
			b.failures.CompareAndSwap(nil, "Push: "+err.Error())
		}
		b.served.Add(1)
		if _, err := vr.Notify(); err != nil && !errors.Is(err, syscall.ENOTCONN) {
			b.failures.CompareAndSwap(nil, "Notify: "+err.Error())
		}
		return
	}
	b.left[ch.Head()] = ch // not pushed: put back when this call returns
	b.leftCount.Add(1)
}

func (b *leaveBackend) QueueStopped(vr *Vring) { clear(b.left) }

func TestUnpushedChainsArePutBack(t *testing.T) {
	b := &leaveBackend{left: map[uint16]*Chain{}}
	d, err := NewDaemon(b, Options{NumQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetPoll(true); err != nil {
		t.Fatal(err)
	}
	out, status := serve(t, d, "--only=io-round-trip,ring-restart")
	requireAllPassed(t, out, status, 2)
	if f := b.failures.Load(); f != nil {
		t.Fatalf("in the handler: %s", f)
	}
	t.Logf("chains left unpushed %d, served when popped again %d", b.leftCount.Load(), b.served.Load())
	if b.served.Load() == 0 || b.leftCount.Load() < b.served.Load() {
		t.Fatalf("left %d, served %d: put-back chains did not come again", b.leftCount.Load(), b.served.Load())
	}
}
