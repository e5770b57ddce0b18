//! procrun: runs the processes of a Procfile, honcho-compatible, and works as a container init.
//!
//! `main` blocks signals and hands over to `app`, the dispatcher. The layers, top to bottom
//! (arrows only point down; ARCHITECTURE.md has the map and the invariants):
//! - `app`: arguments → plain configuration → a command;
//! - `health` (probe, status endpoint, `procrun status`) and `export`;
//! - `supervise`: `start` and `run`, with signals, the reaper, spawning and the status board;
//! - `output`: line splitting and the printer, sole owner of stdout during a run;
//! - `net`: addresses, the small HTTP/1.1 module, health checks;
//! - `config`: the Procfile and env files, read and validated;
//! - `cli`, `error`, `text`, `time`, `runtime`: leaves.

#[cfg(not(unix))]
compile_error!("procrun supports Unix (Linux) only");

mod app;
mod cli;
mod config;
mod error;
mod export;
mod health;
mod net;
mod output;
mod runtime;
mod supervise;
mod text;
mod time;

pub(crate) use error::warn;

// SAFETY: the constructor only calls `pthread_sigmask` and `sigaction` (to read, not change,
// SIGPIPE's disposition), stores into a `OnceLock` and an atomic, none of which needs Rust's
// runtime; it runs once, single-threaded, before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static BLOCK_SIGNALS_AT_LOAD: extern "C" fn() = supervise::signals::block_at_load;

fn main() -> std::process::ExitCode {
    // Block asynchronous signals before anything else (the constructor above normally did
    // already) so none is lost: as PID 1 an unhandled signal would be discarded.
    let mask = supervise::signals::block_all();
    let code = app::main(mask);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
