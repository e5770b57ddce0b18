//! `procrun status` and the status endpoint (stub, being written).

use clap::Args;

/// Arguments of `procrun status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Address of the status endpoint of the running procrun
    #[arg(long = "addr", env = "PROCRUN_STATUS_ADDR", value_name = "ADDR")]
    pub addr: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// One managed process as the status endpoint reports it.
#[derive(Debug, Clone)]
pub struct ProcStatus {
    pub name: String,
    pub pid: i32,
    pub running: bool,
    pub exit_code: Option<i32>,
}

/// The supervisor's published view of its processes (read by the endpoint).
#[derive(Debug, Default)]
pub struct StatusBoard {
    procs: std::cell::RefCell<Vec<ProcStatus>>,
}

impl StatusBoard {
    /// Replaces the snapshot.
    pub fn update(&self, procs: Vec<ProcStatus>) {
        *self.procs.borrow_mut() = procs;
    }
    /// A copy of the snapshot.
    pub fn snapshot(&self) -> Vec<ProcStatus> {
        self.procs.borrow().clone()
    }
}

/// `procrun status` (not yet implemented).
pub fn run(_args: &StatusArgs) -> i32 {
    crate::warn("status: not implemented yet");
    1
}

/// Validates the status options of `start`; returns the board when an endpoint is wanted.
pub fn setup(
    args: &crate::cli::StartArgs,
    _instances: &[crate::config::Instance],
) -> Result<Option<std::rc::Rc<StatusBoard>>, crate::error::Error> {
    Ok(args
        .status_addr
        .as_ref()
        .map(|_| std::rc::Rc::new(StatusBoard::default())))
}
