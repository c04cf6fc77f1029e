package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildExample compiles this program into dir and returns its path.
func buildExample(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "go-rng")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestGuestReadsHwrng boots QEMU guests (tests/e2e/rng_guest_test.sh) that
// read /dev/hwrng from this daemon serving a file of 0x5a bytes.
func TestGuestReadsHwrng(t *testing.T) {
	script, err := filepath.Abs("../../../../tests/e2e/rng_guest_test.sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("the end-to-end script is missing: %v", err)
	}
	bin := buildExample(t, t.TempDir())
	cmd := exec.Command(script, bin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	t.Logf("rng_guest_test.sh output:\n%s", out.String())
	if err != nil {
		// 77 (skipped: a tool or the guest kernel is missing) is a failure here.
		t.Fatalf("rng_guest_test.sh %s: %v", bin, err)
	}
	if !strings.Contains(out.String(), "RESULT: PASS") {
		t.Fatal("no RESULT: PASS line")
	}
}

// TestUsageAndSignals checks the command line and that SIGTERM ends the
// daemon with status 0 and removes its socket.
func TestUsageAndSignals(t *testing.T) {
	dir := t.TempDir()
	bin := buildExample(t, dir)
	var ee *exec.ExitError
	if err := exec.Command(bin).Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("without --socket-path: %v, want exit status 2", err)
	}
	if out, err := exec.Command(bin, "--help").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("--socket-path")) {
		t.Errorf("--help: %v\n%s", err, out)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "rng.sock")
	if err := exec.Command(bin, "--socket-path="+sock, "--source="+empty).Run(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("an empty source: %v, want exit status 1", err)
	}
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(bin, "--socket-path="+sock)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("the daemon did not create its socket")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("after %v: %v, want exit status 0", sig, err)
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("the daemon did not stop on %v", sig)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind after %v", sig)
		}
	}
}
