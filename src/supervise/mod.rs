//! Supervision: `start` (the event loop over a Procfile's processes) and `run` (one command as
//! a container init), built on `signals` (the signalfd), `reaper` (the only `waitpid`),
//! `spawn` (the only `fork`) and `procfs`; `board` and `ready` publish the processes' state for
//! the status endpoint.

pub(crate) mod board;
mod procfs;
pub(crate) mod ready;
mod reaper;
pub(crate) mod run;
pub(crate) mod signals;
pub(crate) mod spawn;
pub(crate) mod start;
