//! Typed errors and procrun's exit-code table.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success; or the first stopped process exited 0 |
//! | 1 | bad input: Procfile, `.env`, option values (port, concurrency, readiness), spawn failure |
//! | 2 | usage error (unknown command or option, missing value) |
//! | N | `start`: the exit code of the first process to stop; `run`: the command's code |
//! | 128+N | that process (or command) was killed by signal N |
//! | 129, 130, 131, 143 | procrun itself received SIGHUP, SIGINT, SIGQUIT, SIGTERM (`start`) |

use std::fmt;
use std::path::PathBuf;

/// Exit code for bad input.
pub(crate) const EXIT_BAD_INPUT: i32 = 1;
/// Exit code for usage errors (clap uses the same).
pub(crate) const EXIT_USAGE: i32 = 2;

/// Everything that stops procrun before (or instead of) supervising.
#[derive(Debug)]
pub(crate) enum Error {
    ProcfileMissing {
        path: PathBuf,
    },
    ProcfileNotUtf8 {
        path: PathBuf,
    },
    DuplicateProcess {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    EnvSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    EnvNotUtf8 {
        path: PathBuf,
    },
    UnknownProcess {
        name: String,
    },
    InvalidPort {
        value: String,
        source: &'static str,
    },
    InvalidConcurrency {
        value: String,
    },
    InvalidReady {
        value: String,
    },
    InvalidAddress {
        value: String,
    },
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        EXIT_BAD_INPUT
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProcfileMissing { path } => {
                write!(
                    f,
                    "Procfile does not exist or is not a file: {}",
                    path.display()
                )
            }
            Error::ProcfileNotUtf8 { path } => {
                write!(f, "{}: not valid UTF-8 text", path.display())
            }
            Error::DuplicateProcess {
                path,
                name,
                first,
                second,
            } => write!(
                f,
                "{}:{second}: process names must be unique within a Procfile: `{name}` is already defined on line {first}",
                path.display()
            ),
            Error::EnvSyntax {
                path,
                line,
                message,
            } => {
                write!(f, "{}:{line}: {message}", path.display())
            }
            Error::EnvNotUtf8 { path } => write!(f, "{}: not valid UTF-8 text", path.display()),
            Error::UnknownProcess { name } => {
                write!(f, "Process type '{name}' does not exist in Procfile")
            }
            Error::InvalidPort { value, source } => {
                write!(f, "invalid value for port: '{value}' (from {source})")
            }
            Error::InvalidConcurrency { value } => write!(
                f,
                "invalid value for concurrency: '{value}' (expected name=N,...)"
            ),
            Error::InvalidReady { value } => write!(
                f,
                "invalid readiness check: '{value}' (expected name=tcp or name=http:/path)"
            ),
            Error::InvalidAddress { value } => {
                write!(f, "invalid address: '{value}' (expected HOST:PORT)")
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

/// Writes `procrun: MESSAGE` to stderr, ignoring errors (stderr may be closed).
pub(crate) fn warn(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "procrun: {message}");
}

/// The shell convention for a wait status: the exit code, or 128+N for a death by signal N.
pub(crate) fn status_code(status: &nix::sys::wait::WaitStatus) -> Option<i32> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some(*code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + *sig as i32),
        _ => None,
    }
}
