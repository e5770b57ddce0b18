//! Supervision: `start` (the event loop around `machine`, the lifecycle of every process as a
//! pure state machine) and `run` (one command as a container init), built on `signals` (the
//! signalfd), `reaper` (the only `waitpid`), `spawn` (the only `fork`), `reader` (pipes →
//! lines) and `procfs`; `board` publishes the processes' state for the status endpoint.

pub(crate) mod board;
pub(crate) mod machine;
mod procfs;
mod reader;
mod reaper;
pub(crate) mod run;
pub(crate) mod signals;
pub(crate) mod spawn;
pub(crate) mod start;
