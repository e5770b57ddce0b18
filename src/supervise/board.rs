//! The status board: what the supervisor publishes about its processes for observers (the
//! status endpoint, readiness checks). The supervisor and the readiness checks write it; the
//! endpoint only reads it. Everything runs on the supervisor's thread, so plain `RefCell`s do.

use crate::config::{Instance, Ready};
use std::cell::{Cell, Ref, RefCell};
use std::time::SystemTime;

/// Where a process is, as observers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    NotStarted,
    Running,
    Stopped,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::NotStarted => "not started",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }
}

/// One instance on the board.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// `web.1`
    pub(crate) name: String,
    pub(crate) type_name: String,
    pub(crate) port: u32,
    /// Its readiness check, if any.
    pub(crate) check: Option<Ready>,
    /// Result of the last readiness check (`None` before the first).
    pub(crate) ready: Option<bool>,
    pub(crate) pid: Option<i32>,
    pub(crate) state: State,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) stopped_at: Option<SystemTime>,
    /// The shell convention of its exit status (128+N for a signal death), once stopped.
    pub(crate) exit_code: Option<i32>,
}

impl Entry {
    /// Running, and its readiness check (if any) passed last time.
    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Running && (self.check.is_none() || self.ready == Some(true))
    }
}

/// The published view of every instance, in start order.
#[derive(Debug, Default)]
pub(crate) struct Board {
    entries: RefCell<Vec<Entry>>,
    /// Set when shutdown begins: from then on `/health` answers 503.
    stopping: Cell<bool>,
}

impl Board {
    /// A board for `instances`, with the readiness check of each type from `checks`.
    pub(crate) fn new(instances: &[Instance], checks: &[(String, Ready)]) -> Board {
        let entries = instances
            .iter()
            .map(|i| Entry {
                name: i.name.clone(),
                type_name: i.type_name.clone(),
                port: i.port,
                check: checks
                    .iter()
                    .find(|(n, _)| *n == i.type_name)
                    .map(|(_, r)| r.clone()),
                ready: None,
                pid: None,
                state: State::NotStarted,
                started_at: None,
                stopped_at: None,
                exit_code: None,
            })
            .collect();
        Board {
            entries: RefCell::new(entries),
            stopping: Cell::new(false),
        }
    }

    /// Instance `i` runs as `pid`.
    pub(crate) fn started(&self, i: usize, pid: i32) {
        if let Some(e) = self.entries.borrow_mut().get_mut(i) {
            e.pid = Some(pid);
            e.state = State::Running;
            e.started_at = Some(SystemTime::now());
            e.stopped_at = None;
            e.ready = None;
            e.exit_code = None;
        }
    }

    /// Instance `i` has exited with `exit_code` (shell convention).
    pub(crate) fn stopped(&self, i: usize, exit_code: Option<i32>) {
        if let Some(e) = self.entries.borrow_mut().get_mut(i)
            && e.state != State::Stopped
        {
            e.state = State::Stopped;
            e.stopped_at = Some(SystemTime::now());
            e.ready = Some(false);
            e.exit_code = exit_code;
        }
    }

    /// Records a readiness result for instance `i` while it runs.
    pub(crate) fn set_ready(&self, i: usize, ready: bool) {
        if let Some(e) = self.entries.borrow_mut().get_mut(i)
            && e.state == State::Running
        {
            e.ready = Some(ready);
        }
    }

    /// Marks the run as shutting down (load balancers should stop sending traffic).
    pub(crate) fn set_stopping(&self) {
        self.stopping.set(true);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// The entries, for reading.
    pub(crate) fn entries(&self) -> Ref<'_, Vec<Entry>> {
        self.entries.borrow()
    }
}
