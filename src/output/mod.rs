//! Output: line splitting, the printer (sole owner of stdout) and timestamps.

pub mod lines;
pub mod printer;
pub mod time;
