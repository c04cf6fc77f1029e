// SPDX-License-Identifier: Apache-2.0
//! vhu-rng-rs: a vhost-user virtio-rng device written with the safe
//! `vhostuser` crate. Every device-writable buffer the driver posts on the
//! request queue is filled from the entropy source (default /dev/urandom).
//! Serves front-ends one after another until SIGINT or SIGTERM.
//!
//!   vhu-rng-rs --socket-path=PATH [--source=FILE] [--verbose]
//!
//! A regular file as source is read in a loop; anything else (a character
//! device, a pipe) is read as a stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;
use std::sync::Mutex;

use vhostuser::{Backend, Daemon, LogLevel, Vring, SIGINT, SIGTERM};

const USAGE: &str = "\
usage: vhu-rng-rs --socket-path=PATH [--source=FILE] [--verbose]
  --socket-path=PATH  unix socket to listen on for the front-end (QEMU:
                      -chardev socket,path=PATH -device vhost-user-rng-pci)
  --source=FILE       entropy source (default /dev/urandom); a regular
                      file is read in a loop
  --verbose           log protocol events to stderr (twice: debug)
";

struct Source {
    file: File,
    is_file: bool,
}

impl Source {
    /// Fills as much of `buf` as the source gives; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut off = 0;
        while off < buf.len() {
            match self.file.read(&mut buf[off..]) {
                Ok(0) if self.is_file => {
                    self.file.seek(SeekFrom::Start(0))?;
                }
                Ok(0) => break,
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if off > 0 => {
                    eprintln!("vhu-rng-rs: reading the source: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(off)
    }
}

struct Rng {
    source: Mutex<Source>,
}

impl Backend for Rng {
    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self) -> u16 {
        1024
    }

    fn handle_queue(&self, vring: &Vring<'_>) {
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut chain = match vring.pop() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("vhu-rng-rs: queue {}: {e}; waiting for a reset", vring.index());
                    break;
                }
            };
            let mut written = 0u32;
            for buf in chain.writable() {
                match source.fill(buf) {
                    Ok(n) => {
                        written += n as u32;
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) => {
                        eprintln!("vhu-rng-rs: reading the source: {e}");
                        break;
                    }
                }
            }
            if let Err(e) = vring.push(chain, written) {
                eprintln!("vhu-rng-rs: push: {e}");
            }
        }
        let _ = vring.notify();
    }
}

struct Options {
    socket: String,
    source: String,
    verbose: u32,
}

fn parse_args() -> Result<Options, ExitCode> {
    let mut socket = None;
    let mut source = "/dev/urandom".to_string();
    let mut verbose = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, ExitCode> {
            inline.clone().or_else(|| args.next()).ok_or_else(|| {
                eprintln!("vhu-rng-rs: {name} needs a value\n{USAGE}");
                ExitCode::from(2)
            })
        };
        match name.as_str() {
            "--socket-path" | "-s" => socket = Some(value("--socket-path")?),
            "--source" | "-r" => source = value("--source")?,
            "--verbose" | "-v" => verbose += 1,
            "--help" | "-h" => {
                print!("{USAGE}");
                return Err(ExitCode::SUCCESS);
            }
            _ => {
                eprintln!("vhu-rng-rs: unknown argument {arg}\n{USAGE}");
                return Err(ExitCode::from(2));
            }
        }
    }
    let Some(socket) = socket else {
        eprint!("{USAGE}");
        return Err(ExitCode::from(2));
    };
    Ok(Options { socket, source, verbose })
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(code) => return code,
    };
    let file = match File::open(&opts.source) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vhu-rng-rs: cannot open {}: {e}", opts.source);
            return ExitCode::FAILURE;
        }
    };
    let meta = file.metadata().ok();
    let is_file = meta.as_ref().is_some_and(|m| m.is_file());
    if is_file && meta.is_some_and(|m| m.len() == 0) {
        eprintln!("vhu-rng-rs: {} is empty", opts.source);
        return ExitCode::FAILURE;
    }

    let backend = Rng { source: Mutex::new(Source { file, is_file }) };
    let mut daemon = match Daemon::new(backend) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vhu-rng-rs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let level = match opts.verbose {
        0 => LogLevel::Warning,
        1 => LogLevel::Info,
        _ => LogLevel::Debug,
    };
    let setup = daemon
        .set_log(level, |level, msg| eprintln!("vhu-rng-rs: {}: {msg}", level.name()))
        .and_then(|()| daemon.listen(&opts.socket))
        .and_then(|()| daemon.stop_on_signals(&[SIGINT, SIGTERM]));
    if let Err(e) = setup {
        eprintln!("vhu-rng-rs: {e}");
        return ExitCode::FAILURE;
    }
    match daemon.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhu-rng-rs: {e}");
            ExitCode::FAILURE
        }
    }
}
