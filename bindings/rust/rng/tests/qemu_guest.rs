// SPDX-License-Identifier: Apache-2.0
//! A QEMU guest reads /dev/hwrng served by the Rust rng daemon: the
//! project's end-to-end script (tests/e2e/rng_guest_test.sh) boots two
//! guests one after the other against one daemon process, checks every byte
//! is the 0x5a pattern of the source file, and that SIGTERM exits 0.

mod common;

use std::process::Command;

#[test]
fn qemu_guest_reads_hwrng_from_the_rust_daemon() {
    let script = common::repo_root().join("tests/e2e/rng_guest_test.sh");
    assert!(script.is_file(), "{} is missing", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .arg(common::daemon_bin())
        .output()
        .expect("running rng_guest_test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    // 77 means the script skipped (missing tools): that is a failure here.
    assert_eq!(out.status.code(), Some(0), "rng_guest_test.sh failed");
    assert!(stdout.contains("RESULT: PASS"), "no RESULT: PASS line");
}
