// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the vhu-rng-rs tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The installation prefix of libvhostuser-cxx: VHU_PREFIX, else what
/// pkg-config says.
pub fn prefix() -> PathBuf {
    if let Some(p) = std::env::var_os("VHU_PREFIX") {
        return PathBuf::from(p);
    }
    let out = Command::new("pkg-config")
        .args(["--variable=prefix", "vhostuser"])
        .output()
        .expect("running pkg-config");
    assert!(out.status.success(), "pkg-config does not know vhostuser");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vhu-rng-rs")
}

/// A running daemon process; killed on drop if still running.
pub struct Daemon {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, source: &Path) -> Daemon {
        let socket = dir.join("rng.sock");
        let stderr = dir.join("daemon.err");
        let child = Command::new(daemon_bin())
            .arg(format!("--socket-path={}", socket.display()))
            .arg(format!("--source={}", source.display()))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting vhu-rng-rs");
        let d = Daemon { child: Some(child), socket, stderr };
        let t0 = Instant::now();
        while !d.socket.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no socket after 10 s: {}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within 5 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        let pid = child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
        assert!(st.success(), "kill -TERM {pid} failed");
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not exit within 5 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A file of `len` bytes of `byte`.
pub fn pattern_file(dir: &Path, byte: u8, len: usize) -> PathBuf {
    let p = dir.join("pattern.bin");
    std::fs::write(&p, vec![byte; len]).unwrap();
    p
}
