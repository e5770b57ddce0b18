//! `procrun probe`: one-shot and watch-mode health probes (stub, being written).

use clap::Args;

/// Arguments of `procrun probe`.
#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Targets: http://host:port/path, tcp://host:port, unix:/path
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// Runs the probe; returns the exit code.
pub fn run(_args: &ProbeArgs) -> i32 {
    1
}
