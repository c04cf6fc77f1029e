// SPDX-License-Identifier: Apache-2.0
//! The Rust rng daemon against the project's conformance checker.

mod common;

use std::process::Command;

use common::{pattern_file, prefix, Daemon, TempDir};

#[test]
fn vhu_check_passes_and_sigterm_exits_0() {
    let dir = TempDir::new("vhu-rng-rs-check");
    let source = pattern_file(&dir.0, 0x5a, 4096);
    let mut daemon = Daemon::start(&dir.0, &source);
    let check = prefix().join("bin/vhu-check");
    assert!(check.is_file(), "{} is missing", check.display());

    for round in 1..=2 {
        let out = Command::new(&check)
            .arg(format!("--socket-path={}", daemon.socket.display()))
            .output()
            .expect("running vhu-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("vhu-check round {round}:\n{stdout}");
        assert!(
            out.status.success(),
            "vhu-check exited {:?}\n{stdout}\n{}\ndaemon:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
        let summary = stdout.lines().last().unwrap_or("");
        assert!(summary.ends_with(" 0 failed"), "summary: {summary}");
        let passed: u32 = summary.split_whitespace().next().unwrap().parse().unwrap();
        assert!(passed >= 15, "only {passed} checks passed");
        // The data path really ran: the round trip used a buffer.
        assert!(stdout.contains("PASS io-round-trip"), "io-round-trip did not pass");
    }

    let status = daemon.terminate();
    assert!(status.success(), "daemon exit status {status:?}\n{}", daemon.log());
    assert!(!daemon.socket.exists(), "socket left behind after exit");
}

#[test]
fn help_and_bad_usage() {
    let out = Command::new(common::daemon_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--socket-path=PATH"));
    let out = Command::new(common::daemon_bin()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(common::daemon_bin())
        .args(["--socket-path=/nonexistent/x.sock", "--source=/nonexistent/file"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/file"));
}
