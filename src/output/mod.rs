//! Output of `start`: line splitting and the printer, sole owner of stdout during a run.

pub(crate) mod lines;
pub(crate) mod printer;
