//! Process roles: what each Procfile type does in the run's lifecycle beyond honcho's "start
//! all, the first to stop ends the run". Set by `start`'s options (`--before`, `--can-die`,
//! `--auto-restart`, `--restart-limit`, `--after`, `--stop-signal`, `--drain`), never by the
//! Procfile, which stays valid for honcho and Heroku. With none given (and no `release` type),
//! every accessor answers honcho's behaviour.

use std::time::Duration;

/// The validated roles of a run, by process type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roles {
    /// Types run first, one after another, each to completion, in this order (the release
    /// phase); a type named `release` is one unless `--before` says otherwise.
    pub(crate) before: Vec<String>,
    /// Types whose stop ends nothing and sets no exit code.
    pub(crate) can_die: Vec<String>,
    /// Types started again when they stop (after a backoff).
    pub(crate) auto_restart: Vec<String>,
    /// Restarts allowed within `RESTART_WINDOW` before a type counts as stopped for good.
    pub(crate) restart_limit: u32,
    /// `(type, dependencies)`: the type starts only when every dependency is ready.
    pub(crate) after: Vec<(String, Vec<String>)>,
    /// `(type, signal number)`: sent to that type's groups at shutdown instead of SIGTERM.
    pub(crate) stop_signal: Vec<(String, i32)>,
    /// Time between a shutdown signal and the first stop signal, while `/health` says 503.
    pub(crate) drain: Duration,
}

/// The window in which `restart_limit` restarts are allowed.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// `--restart-limit`'s default.
pub(crate) const DEFAULT_RESTART_LIMIT: u32 = 5;

impl Default for Roles {
    fn default() -> Self {
        Roles {
            before: Vec::new(),
            can_die: Vec::new(),
            auto_restart: Vec::new(),
            restart_limit: DEFAULT_RESTART_LIMIT,
            after: Vec::new(),
            stop_signal: Vec::new(),
            drain: Duration::ZERO,
        }
    }
}

impl Roles {
    /// Position of `type_name` in the release phase, if it is a `--before` type.
    pub(crate) fn before_index(&self, type_name: &str) -> Option<usize> {
        self.before.iter().position(|t| t == type_name)
    }

    pub(crate) fn can_die(&self, type_name: &str) -> bool {
        self.can_die.iter().any(|t| t == type_name)
    }

    pub(crate) fn auto_restart(&self, type_name: &str) -> bool {
        self.auto_restart.iter().any(|t| t == type_name)
    }

    /// The types `type_name` waits for.
    pub(crate) fn deps(&self, type_name: &str) -> &[String] {
        self.after
            .iter()
            .find(|(t, _)| t == type_name)
            .map_or(&[], |(_, deps)| deps.as_slice())
    }

    /// The signal that stops `type_name` (SIGTERM unless `--stop-signal` says otherwise).
    pub(crate) fn stop_signal(&self, type_name: &str) -> i32 {
        self.stop_signal
            .iter()
            .find(|(t, _)| t == type_name)
            .map_or(libc::SIGTERM, |(_, s)| *s)
    }
}
