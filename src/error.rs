//! Typed errors and procrun's exit-code table.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success; or the first process to stop for good (that may not die) exited 0; or every process may die and all stopped |
//! | 1 | bad input: Procfile, `.env`, option values (port, concurrency, readiness); `start`: a process could not be started, or never will (a dependency stopped before it was ready) |
//! | 2 | usage error: unknown command or option, missing or invalid option value, process-role options that do not fit the Procfile (`Error::Usage`) |
//! | N | `start`: the exit code of the first process to stop for good that may not die, or of the failed `--before` process; `run`: the command's code (127/126 when it cannot be exec'd) |
//! | 128+N | that process (or command) was killed by signal N; or procrun received signal N while reading its inputs (`Error::Interrupted`) |
//! | 129, 130, 131, 143 | procrun itself received SIGHUP, SIGINT, SIGQUIT, SIGTERM (`start`) |
//!
//! No message carries a value read from an env file (they end up in container logs): env-file
//! errors name the file, line, column and key.

use std::fmt;
use std::path::PathBuf;

/// Exit code for bad input.
pub(crate) const EXIT_BAD_INPUT: i32 = 1;
/// Exit code for usage errors (clap and honcho use the same).
pub(crate) const EXIT_USAGE: i32 = 2;

/// Everything that stops procrun before (or instead of) supervising.
#[derive(Debug)]
pub(crate) enum Error {
    /// The Procfile does not exist. `env_name`: `ENV_NAME` chose it, and whether that
    /// environment's directory exists.
    ProcfileMissing {
        path: PathBuf,
        env_name: Option<(String, bool)>,
    },
    /// An input (the Procfile, an env file) exists but cannot be read.
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    NotUtf8 {
        path: PathBuf,
    },
    DuplicateProcess {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    ProcfileNul {
        path: PathBuf,
        name: String,
        line: usize,
    },
    /// A malformed env file line; `message` names at most the key, never a value.
    EnvSyntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    UnknownProcess {
        name: String,
    },
    /// `value`: `None` when it came from an env file (not shown).
    InvalidPort {
        value: Option<String>,
        source: String,
    },
    PortOutOfRange {
        instance: String,
        port: u64,
        /// The base port, `None` when it came from an env file (not shown).
        base: Option<u32>,
        source: String,
    },
    InvalidConcurrency {
        value: String,
        reason: Option<String>,
    },
    InvalidReady {
        value: String,
        reason: Option<String>,
    },
    InvalidAddress {
        value: String,
    },
    /// A string `execve` would refuse with E2BIG (longer than the kernel's per-string limit).
    TooLong {
        /// What it is, e.g. "env file .env:3: `KEY`" or "the command of `web` (Procfile:2)".
        what: String,
        len: usize,
        limit: usize,
    },
    /// A process's whole environment and arguments over the kernel's limit for `execve`.
    TooBig {
        instance: String,
        size: usize,
        limit: usize,
    },
    /// A usage error found after parsing (process roles against the Procfile): exit 2.
    Usage {
        option: String,
        message: String,
    },
    /// A shutdown signal arrived while the inputs were being read: exit 128+N.
    Interrupted {
        signal: i32,
        path: PathBuf,
    },
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => EXIT_USAGE,
            Error::Interrupted { signal, .. } => 128 + signal,
            _ => EXIT_BAD_INPUT,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ProcfileMissing { path, env_name } => {
                write!(f, "Procfile does not exist: {}", path.display())?;
                match env_name {
                    Some((name, true)) => write!(f, " (chosen by ENV_NAME={name})"),
                    Some((name, false)) => write!(
                        f,
                        " (chosen by ENV_NAME={name}; there is no directory environments/{name})"
                    ),
                    None => Ok(()),
                }
            }
            Error::Unreadable { what, path, source } => {
                write!(f, "cannot read {what} {}: {source}", path.display())
            }
            Error::NotUtf8 { path } => write!(f, "{}: not valid UTF-8 text", path.display()),
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
            Error::ProcfileNul { path, name, line } => write!(
                f,
                "{}:{line}: NUL byte in the command of `{name}`",
                path.display()
            ),
            Error::EnvSyntax {
                path,
                line,
                column,
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
            Error::UnknownProcess { name } => {
                write!(f, "Process type '{name}' does not exist in Procfile")
            }
            Error::InvalidPort {
                value: Some(value),
                source,
            } => write!(
                f,
                "invalid value for port: '{value}' (from {source}; a port is 1-65535)"
            ),
            Error::InvalidPort {
                value: None,
                source,
            } => write!(f, "invalid value for port: {source} is not 1-65535"),
            Error::PortOutOfRange {
                instance,
                port,
                base,
                source,
            } => {
                write!(f, "port {port} of {instance} is above 65535 (base port ")?;
                if let Some(base) = base {
                    write!(f, "{base} ")?;
                }
                write!(f, "from {source}, +100 per process type, +1 per instance)")
            }
            Error::InvalidConcurrency { value, reason } => {
                write!(f, "invalid value for concurrency: '{value}' (")?;
                match reason {
                    Some(r) => write!(f, "{r})"),
                    None => write!(f, "expected name=N,...)"),
                }
            }
            Error::InvalidReady { value, reason } => {
                write!(f, "invalid readiness check: '{value}' (")?;
                match reason {
                    Some(r) => write!(f, "{r})"),
                    None => write!(f, "expected name=tcp or name=http:/path)"),
                }
            }
            Error::InvalidAddress { value } => {
                write!(f, "invalid address: '{value}' (expected HOST:PORT)")
            }
            Error::TooLong { what, len, limit } => write!(
                f,
                "{what} is {len} bytes, over the kernel's limit of {limit} for one argument or variable (execve would fail with E2BIG)"
            ),
            Error::TooBig {
                instance,
                size,
                limit,
            } => write!(
                f,
                "the environment and arguments of {instance} take {size} bytes, over the kernel's limit of {limit} (execve would fail with E2BIG; see `ulimit -s`)"
            ),
            Error::Usage { option, message } => write!(f, "{option}: {message}"),
            Error::Interrupted { signal, path } => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {signal}"));
                write!(f, "{name} received while reading {}", path.display())
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

/// An io::Error as a short reason, without the "(os error N)" suffix.
pub(crate) fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
