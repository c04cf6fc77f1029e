// SPDX-License-Identifier: Apache-2.0
//! The safe wrapper's ownership and panic rules: the boxed backend is
//! dropped exactly once (when the daemon is freed, or when creation fails),
//! and a panic in a backend callback is logged and does not unwind into C
//! or abort: the daemon goes on serving front-ends.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vhostuser::{errno, Backend, Daemon, LogLevel, Vring};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vhu_check() -> PathBuf {
    let prefix = match std::env::var_os("VHU_PREFIX") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = Command::new("pkg-config")
                .args(["--variable=prefix", "vhostuser"])
                .output()
                .expect("running pkg-config");
            assert!(out.status.success());
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        }
    };
    let p = prefix.join("bin/vhu-check");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Runs vhu-check; returns (exit code, stdout).
fn run_check(socket: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(vhu_check())
        .arg(format!("--socket-path={}", socket.display()))
        .args(extra)
        .output()
        .expect("running vhu-check");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Counts its drops and the chains it served.
struct Counted {
    drops: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
    queues: u16,
}
impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
impl Backend for Counted {
    fn num_queues(&self) -> u16 {
        self.queues
    }
    fn handle_queue(&self, vring: &Vring<'_>) {
        while let Ok(Some(chain)) = vring.pop() {
            let _ = vring.push(chain, 0);
            self.handled.fetch_add(1, Ordering::SeqCst);
        }
        let _ = vring.notify();
    }
}

#[test]
fn backend_dropped_once_when_daemon_is_dropped() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d =
        Daemon::new(Counted { drops: drops.clone(), handled: Arc::default(), queues: 1 }).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "dropped while the daemon lives");
    drop(d);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn backend_dropped_once_when_creation_fails() {
    let drops = Arc::new(AtomicUsize::new(0));
    // 0 queues is an invalid table: the library frees the user data itself.
    let err = Daemon::new(Counted { drops: drops.clone(), handled: Arc::default(), queues: 0 })
        .err()
        .expect("must fail");
    assert_eq!(err.errno(), errno::EINVAL, "{err:?}");
    assert_eq!(err.code(), -errno::EINVAL);
    assert!(!err.message().is_empty());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let err = Daemon::new(Counted { drops: drops.clone(), handled: Arc::default(), queues: 1000 })
        .err()
        .expect("must fail");
    assert_eq!(err.errno(), errno::EINVAL, "{err:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn backend_dropped_once_after_serving_a_front_end() {
    let dir = TempDir::new("vhostuser-rs-drop");
    let sock = dir.0.join("s.sock");
    let drops = Arc::new(AtomicUsize::new(0));
    let log_drops = Arc::new(AtomicUsize::new(0));
    struct LogGuard(Arc<AtomicUsize>);
    impl Drop for LogGuard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let guard = LogGuard(log_drops.clone());
    let handled = Arc::new(AtomicUsize::new(0));
    let backend = Counted { drops: drops.clone(), handled: handled.clone(), queues: 2 };
    let mut d = Daemon::new(backend).unwrap();
    d.set_log(LogLevel::Warning, move |_, _| {
        let _ = &guard;
    })
    .unwrap();
    d.set_workers(2).unwrap();
    d.assign_queue(1, 1).unwrap();
    assert_eq!(d.assign_queue(7, 0).unwrap_err().errno(), errno::EINVAL);
    d.listen(&sock).unwrap();
    d.start().unwrap();
    let (code, out) = run_check(&sock, &["--queues=2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(handled.load(Ordering::SeqCst) >= 1, "queue 0 served nothing");
    d.vring_stats(0).unwrap();
    assert!(d.vring_stats(2).is_err());
    d.stop();
    d.wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert_eq!(log_drops.load(Ordering::SeqCst), 0);
    drop(d);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(log_drops.load(Ordering::SeqCst), 1, "log callback not freed once");
    assert!(!sock.exists(), "socket not unlinked");
}

const DATA_HOOKS: u8 = 1; // handle_queue, queue_stopped, device_reset
const NEGOTIATION: u8 = 2; // features_acked

/// Panics in the hooks whose bit is set in `panic`.
struct Panicky {
    panic: Arc<AtomicU8>,
    panics: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}
impl Drop for Panicky {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
impl Panicky {
    fn maybe_panic(&self, bit: u8, hook: &str) {
        if self.panic.load(Ordering::SeqCst) & bit != 0 {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!("deliberate panic in {hook}");
        }
    }
}
impl Backend for Panicky {
    fn num_queues(&self) -> u16 {
        1
    }
    fn features_acked(&self, _features: u64) -> vhostuser::Result<()> {
        self.maybe_panic(NEGOTIATION, "features_acked");
        Ok(())
    }
    fn handle_queue(&self, vring: &Vring<'_>) {
        while let Ok(Some(mut chain)) = vring.pop() {
            // The chain is still held when the handler panics: it must be
            // handed back (0 bytes) while the panic unwinds.
            self.maybe_panic(DATA_HOOKS, "handle_queue");
            let n = chain.write_at(0, b"ok");
            let _ = vring.push(chain, n as u32);
        }
        let _ = vring.notify();
    }
    fn queue_stopped(&self, _vring: &Vring<'_>) {
        self.maybe_panic(DATA_HOOKS, "queue_stopped");
    }
    fn device_reset(&self) {
        self.maybe_panic(DATA_HOOKS, "device_reset");
    }
}

/// Waits up to 5 s for a logged panic report from each of `hooks`.
fn wait_for_logs(logs: &Mutex<Vec<String>>, hooks: &[&str]) {
    let t0 = Instant::now();
    loop {
        let text = logs.lock().unwrap().join("\n");
        let missing: Vec<_> = hooks
            .iter()
            .filter(|h| {
                !text.contains(&format!("error: panic in Backend::{h}: deliberate panic in {h}"))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no panic report of {missing:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn panics_in_callbacks_are_caught_and_logged() {
    let dir = TempDir::new("vhostuser-rs-panic");
    let sock = dir.0.join("s.sock");
    let panic = Arc::new(AtomicU8::new(DATA_HOOKS));
    let panics = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let backend = Panicky { panic: panic.clone(), panics: panics.clone(), drops: drops.clone() };
    let mut d = Daemon::new(backend).unwrap();
    let sink = logs.clone();
    d.set_log(LogLevel::Warning, move |level, msg| {
        sink.lock().unwrap().push(format!("{}: {msg}", level.name()))
    })
    .unwrap();
    d.listen(&sock).unwrap();
    d.start().unwrap();

    // The data-path hooks panic: the buffer of the round trip comes back
    // empty and the front-end is still signalled.
    let (_, out) = run_check(&sock, &["--only=io-round-trip", "--verbose"]);
    assert!(
        out.contains("PASS io-round-trip") && out.contains("len 0"),
        "a chain held by a panicking handler was not returned empty:\n{out}"
    );
    // The daemon tears the session down after vhu-check has gone: wait for
    // the stop and reset hooks of that teardown.
    wait_for_logs(&logs, &["handle_queue", "queue_stopped", "device_reset"]);

    // SET_FEATURES fails when features_acked panics.
    panic.store(NEGOTIATION, Ordering::SeqCst);
    let (code, out) = run_check(&sock, &["--only=memory-and-ring-setup"]);
    assert_ne!(code, Some(0), "SET_FEATURES should fail while features_acked panics:\n{out}");
    wait_for_logs(&logs, &["features_acked"]);
    assert!(panics.load(Ordering::SeqCst) >= 4, "{} panics", panics.load(Ordering::SeqCst));

    // The daemon (and this process) survived: with the panics off it passes
    // the whole conformance check, and the data path writes again.
    panic.store(0, Ordering::SeqCst);
    let (code, out) = run_check(&sock, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    let (_, out) = run_check(&sock, &["--only=io-round-trip", "--verbose"]);
    assert!(out.contains("PASS io-round-trip") && out.contains("len 2"), "{out}");

    d.stop();
    let t0 = Instant::now();
    d.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2));
    drop(d);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn errors_carry_errno_and_message() {
    let e = vhostuser::Error::from_errno(-errno::ENOTSUP);
    assert_eq!(e.errno(), errno::ENOTSUP);
    assert_eq!(e.code(), -errno::ENOTSUP);
    assert!(!e.to_string().is_empty());
    let e = vhostuser::Error::new(errno::EIO, "disk gone");
    assert_eq!(e.to_string(), "disk gone");
    let io = std::io::Error::from_raw_os_error(errno::ENOSPC);
    assert_eq!(vhostuser::Error::from(io).errno(), errno::ENOSPC);

    // Errors from the library keep its detailed message.
    let drops = Arc::new(AtomicUsize::new(0));
    let mut d = Daemon::new(Counted { drops, handled: Arc::default(), queues: 1 }).unwrap();
    let err = d.listen("/nonexistent-dir/x.sock").unwrap_err();
    assert!(err.errno() > 0 && err.message().contains("nonexistent-dir"), "{err:?}");
    assert_eq!(d.run().unwrap_err().errno(), errno::ENOTCONN);
    let (major, minor, _) = vhostuser::library_version();
    assert_eq!((major, minor >= 1), (0, true));
}
