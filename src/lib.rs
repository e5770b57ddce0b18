//! procrun: runs the processes of a Procfile, honcho-compatible, and works as a container init.
//!
//! Start at `main.rs` → `app::main`. Configuration: `cli` (arguments) → `config` (files, using
//! the pure parsers `procfile` and `envfile`). Supervision: `supervisor` (the `start` event
//! loop) and `runcmd` (`run`), built on `signals` (signalfd), `reaper` (the only `waitpid`),
//! `spawn` (the only `fork`) and `output` (the only stdout writer). Health: `probe`,
//! `status`. See ARCHITECTURE.md.

#[cfg(not(unix))]
compile_error!("procrun supports Unix (Linux) only");

pub mod app;
pub mod cli;
pub mod config;
pub mod envfile;
pub mod error;
pub mod export;
pub mod output;
pub mod probe;
pub mod procfile;
pub mod reaper;
pub mod runcmd;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod supervisor;

/// Writes `procrun: MESSAGE` to stderr, ignoring errors (stderr may be closed).
pub fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "procrun: {message}");
}

/// The single-threaded runtime every event loop of procrun runs on; `None` (after a warning)
/// if it cannot be built.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            warn(&format!("cannot start the event loop: {e}"));
            None
        }
    }
}

/// Runs a command's event loop (local tasks allowed) to completion; returns its exit code.
pub fn block_on_local(main: impl std::future::Future<Output = i32>) -> i32 {
    match runtime() {
        Some(rt) => tokio::task::LocalSet::new().block_on(&rt, main),
        None => error::EXIT_BAD_INPUT,
    }
}
