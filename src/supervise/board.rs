//! The status board: what the supervisor publishes about its processes for observers (the
//! status endpoint). The event loop writes it after every change; the endpoint only reads it.
//! Everything runs on the supervisor's thread, so plain `RefCell`s do.

use super::machine::View;
use crate::config::{Instance, Ready, Roles};
use std::cell::{Cell, Ref, RefCell};
use std::time::SystemTime;

/// One instance on the board.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// `web.1`
    pub(crate) name: String,
    pub(crate) type_name: String,
    pub(crate) port: u32,
    /// Its roles (`main` when it has none): `release`, `can-die`, `auto-restart`, `after`.
    pub(crate) role: String,
    /// Its readiness check, if any.
    pub(crate) check: Option<Ready>,
    /// Result of the last readiness check (`None` before the first).
    pub(crate) check_ok: Option<bool>,
    /// `waiting`, `starting`, `running`, `backing off` or `stopped`.
    pub(crate) state: &'static str,
    /// The current (or last) process.
    pub(crate) pid: Option<i32>,
    pub(crate) restarts: u32,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) stopped_at: Option<SystemTime>,
    /// The shell convention of its exit status (128+N for a signal death), once it exited.
    pub(crate) exit_code: Option<i32>,
}

impl Entry {
    /// Starting or running (the view gives a process that exited its exit code and another
    /// state).
    pub(crate) fn is_alive(&self) -> bool {
        matches!(self.state, "running" | "starting")
    }

    /// Running, and its readiness check (if any) passed last time.
    pub(crate) fn is_ready(&self) -> bool {
        self.state == "running" && (self.check.is_none() || self.check_ok == Some(true))
    }
}

/// The published view of every instance, in start order.
#[derive(Debug, Default)]
pub(crate) struct Board {
    entries: RefCell<Vec<Entry>>,
    /// Set when shutdown begins: from then on `/health` answers 503.
    stopping: Cell<bool>,
}

/// The roles of type `t`, for people.
fn role(roles: &Roles, t: &str) -> String {
    let mut parts = Vec::new();
    if roles.before_index(t).is_some() {
        parts.push("release".to_string());
    }
    if roles.can_die(t) {
        parts.push("can-die".into());
    }
    if roles.auto_restart(t) {
        parts.push("auto-restart".into());
    }
    if !roles.deps(t).is_empty() {
        parts.push(format!("after {}", roles.deps(t).join("+")));
    }
    if parts.is_empty() {
        "main".into()
    } else {
        parts.join(", ")
    }
}

impl Board {
    /// A board for `instances`, with the readiness check of each type from `checks`.
    pub(crate) fn new(instances: &[Instance], checks: &[(String, Ready)], roles: &Roles) -> Board {
        let entries = instances
            .iter()
            .map(|i| Entry {
                name: i.name.clone(),
                type_name: i.type_name.clone(),
                port: i.port,
                role: role(roles, &i.type_name),
                check: checks
                    .iter()
                    .find(|(n, _)| *n == i.type_name)
                    .map(|(_, r)| r.clone()),
                check_ok: None,
                state: "waiting",
                pid: None,
                restarts: 0,
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

    /// Takes the supervisor's view of instance `i`.
    pub(crate) fn publish(&self, i: usize, view: &View) {
        let mut entries = self.entries.borrow_mut();
        let Some(e) = entries.get_mut(i) else {
            return;
        };
        let now = SystemTime::now();
        if view.pid.is_some() && view.pid != e.pid {
            e.pid = view.pid;
            e.started_at = Some(now);
            e.stopped_at = None;
            e.check_ok = None;
        }
        if view.exit.is_some() && e.stopped_at.is_none() {
            e.stopped_at = Some(now);
        }
        e.state = view.state;
        e.restarts = view.restarts;
        e.exit_code = view.exit.map(|s| s.code());
    }

    /// Records a readiness result for instance `i`.
    pub(crate) fn set_ready(&self, i: usize, ok: bool) {
        if let Some(e) = self.entries.borrow_mut().get_mut(i) {
            e.check_ok = Some(ok);
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
