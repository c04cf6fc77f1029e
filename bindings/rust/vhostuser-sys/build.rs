// SPDX-License-Identifier: Apache-2.0
//! Finds libvhostuser-cxx with the `pkg-config` program (no helper crates, so
//! the workspace builds offline) and tells cargo how to link it.
//!
//! Accepted versions: >= 0.1 and < 1.0 (the 0.x C ABI these declarations
//! describe). `PKG_CONFIG` names another pkg-config binary; `PKG_CONFIG_PATH`
//! is honoured as usual.
//!
//! Emits for dependents (as `DEP_VHOSTUSER_*`): `libdir`, `includedir`,
//! `version`, `cflags`.

use std::env;
use std::process::Command;

const MODULE: &str = "vhostuser";
const MIN: (u32, u32) = (0, 1);
const BELOW: (u32, u32) = (1, 0);

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let bin = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(&bin)
        .args(args)
        .arg(MODULE)
        .output()
        .map_err(|e| format!("cannot run `{bin}`: {e} (install pkg-config)"))?;
    if !out.status.success() {
        return Err(format!(
            "`{bin} {} {MODULE}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

fn fail(msg: &str) -> ! {
    eprintln!("vhostuser-sys: {msg}");
    eprintln!(
        "vhostuser-sys: install libvhostuser-cxx (>= {}.{}, < {}.{}) and point PKG_CONFIG_PATH \
         at the directory that holds vhostuser.pc",
        MIN.0, MIN.1, BELOW.0, BELOW.1
    );
    std::process::exit(1);
}

fn main() {
    for var in ["PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let version = pkg_config(&["--modversion"]).unwrap_or_else(|e| fail(&e));
    let parsed = parse_version(&version)
        .unwrap_or_else(|| fail(&format!("cannot parse the version `{version}` of {MODULE}")));
    if parsed < MIN || parsed >= BELOW {
        fail(&format!(
            "found {MODULE} {version}, but these bindings need >= {}.{} and < {}.{}",
            MIN.0, MIN.1, BELOW.0, BELOW.1
        ));
    }

    let libs = pkg_config(&["--libs"]).unwrap_or_else(|e| fail(&e));
    let mut libdirs = Vec::new();
    for word in libs.split_whitespace() {
        if let Some(dir) = word.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
            libdirs.push(dir.to_string());
        } else if let Some(lib) = word.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    let libdir = pkg_config(&["--variable=libdir"]).unwrap_or_else(|e| fail(&e));
    if !libdir.is_empty() && !libdirs.contains(&libdir) {
        libdirs.insert(0, libdir.clone());
    }
    let includedir = pkg_config(&["--variable=includedir"]).unwrap_or_else(|e| fail(&e));
    let cflags = pkg_config(&["--cflags"]).unwrap_or_else(|e| fail(&e));

    // An rpath so that this package's tests find the library where
    // pkg-config found it without LD_LIBRARY_PATH; dependents add their own
    // from DEP_VHOSTUSER_LIBDIR.
    if let Some(dir) = libdirs.first() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:libdir={}", libdirs.first().map(String::as_str).unwrap_or(""));
    println!("cargo:includedir={includedir}");
    println!("cargo:version={version}");
    println!("cargo:cflags={cflags}");
    // Seen by this package's tests (the layout check compiles C against it).
    println!("cargo:rustc-env=VHOSTUSER_SYS_CFLAGS={cflags}");
    println!("cargo:rustc-env=VHOSTUSER_SYS_LIBS={libs}");
    println!("cargo:rustc-env=VHOSTUSER_SYS_VERSION={version}");
}
