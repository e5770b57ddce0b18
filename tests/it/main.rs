//! procrun's integration tests: one test binary (`cargo nextest run` or `cargo test --test it`)
//! that runs the real `procrun` executable. One module per area; `harness` is shared by all.
//!
//! Tests that need root (PID namespaces) skip visibly when run without it, and fail instead
//! when `PROCRUN_REQUIRE_PID1=1`; `scripts/test-all` says up front which applies.

#[macro_use]
mod harness;

/// honcho compatibility: the observed honcho 2.0.0 corpus in `tests/cases/honcho`.
mod honcho;

/// `procrun start`: lifecycle, signals, shutdown and exit codes.
mod start;

/// Process roles: release phase, can-die, auto-restart, start order, stop signals, drain.
mod roles;

/// Configuration: Procfile and env files, `PROCRUN_*` variables, CLI options and error messages.
mod config;

/// Inputs fail closed and are validated before anything starts; no env-file value in a message.
mod inputs;

/// `procrun run -- CMD`: the single-command init.
mod run;

/// The output pipeline: floods, slow, blocked and closed readers, long lines, raw bytes.
mod output;

/// procrun as a container init: PID 1 of a PID namespace and subreaper on the host.
mod pid1;

/// Repeated runs of races that are too rare to catch in one run.
mod stress;

/// `procrun export`: supervisord, systemd, upstart and runit files.
mod export;

/// `procrun probe`: health checks against real local servers.
mod probe;

/// The status endpoint of `start --status-addr`, readiness checks and `procrun status`.
mod status;

/// The source tree's layers: `use crate::` only points down.
mod layout;
