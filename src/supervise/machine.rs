//! The lifecycle of every process of a `start` run, as one state machine: pure, no I/O, no
//! async, time passed in. `start` (the event loop) turns signals, reaps, end of output,
//! readiness results and deadlines into [`Event`]s, feeds them to [`Machine::handle`] and
//! carries out the [`Action`]s it returns (spawn, signal, print, sweep).
//!
//! Per process: `Waiting` (a release phase or its dependencies are not through yet) →
//! `Spawning` → `Running` (not yet ready while its readiness check has not passed) → exited
//! and its output drained → `BackingOff` (restarted after a delay) or `Stopped` for good.
//!
//! The run: the release phase (`--before` types one after another, each to completion), then
//! `Running`, then on the first shutdown (a process that may not die stopped for good, or a
//! shutdown signal) an optional `Draining` (signals only), `Stopping` (stop signals in reverse
//! dependency order, SIGKILL at the deadline) and `Sweeping` (leftover descendants). With no
//! roles this is honcho's model: all start at once, the first stop ends the run.

use crate::config::RESTART_WINDOW;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A signal repeated within this window is the same signal delivered twice (GNU `timeout`,
/// systemd and scripts signal the process and its group microseconds apart), not a second one.
const SAME_SIGNAL: Duration = Duration::from_millis(100);
/// Minimum grace for leftover descendants in the final sweep.
const SWEEP_GRACE: Duration = Duration::from_millis(500);
/// Longest wait between two restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that stayed up this long is restarted after the shortest wait again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

const SIGKILL: i32 = libc::SIGKILL;

/// What the machine knows of one process instance.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// `web.1`
    pub(crate) name: String,
    /// Its place in the release phase, when it is a `--before` instance.
    pub(crate) before: Option<usize>,
    pub(crate) can_die: bool,
    pub(crate) auto_restart: bool,
    /// What it gets at shutdown (SIGTERM unless `--stop-signal`).
    pub(crate) stop_signal: i32,
    /// Instances that must be ready before this one starts.
    pub(crate) deps: Vec<usize>,
    /// Ready only when its readiness check passes (else as soon as it runs).
    pub(crate) has_check: bool,
}

/// Run-wide settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Grace between the stop signals and SIGKILL (the whole stopping budget).
    pub(crate) timeout: Duration,
    /// Time between a shutdown signal and the stop signals.
    pub(crate) drain: Duration,
    /// Restarts allowed within `RESTART_WINDOW`.
    pub(crate) restart_limit: u32,
    /// Wait before the first restart; doubled for each further one.
    pub(crate) backoff: Duration,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Code(i32),
    Signal(i32),
}

impl Status {
    /// honcho's `rc`: the exit code, or minus the signal.
    pub(crate) fn rc(self) -> i32 {
        match self {
            Status::Code(c) => c,
            Status::Signal(s) => -s,
        }
    }

    /// The shell's convention: the exit code, or 128+N for a death by signal N.
    pub(crate) fn code(self) -> i32 {
        match self {
            Status::Code(c) => c,
            Status::Signal(s) => 128 + s,
        }
    }
}

/// Where a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not started yet: the release phase or its dependencies are not through.
    Waiting,
    /// A spawn was asked for.
    Spawning,
    Running {
        pid: i32,
        since: Instant,
        /// Its readiness check passed (or it has none).
        ready: bool,
        /// Set when its shell was reaped.
        exited: Option<Status>,
        /// Its output reached EOF, or stayed idle long enough after the exit.
        output_done: bool,
        /// Its stop signal went out.
        stop_sent: bool,
        kill_sent: bool,
    },
    /// Started again at `until`.
    BackingOff { until: Instant },
    /// For good (`None`: it never ran, or its restart was cancelled).
    Stopped { status: Option<Status> },
}

/// An input of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Instance `i` runs as `pid`.
    Spawned { i: usize, pid: i32 },
    /// Instance `i` could not be started.
    SpawnFailed { i: usize, reason: String },
    /// Instance `i`'s shell was reaped.
    Exited { i: usize, status: Status },
    /// Instance `i`'s output is finished (EOF, or idle after its exit).
    OutputDone { i: usize },
    /// Instance `i`'s readiness check passed.
    Ready { i: usize },
    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT reached procrun.
    Signal { signo: i32 },
    /// Time passed (a deadline may be due).
    Tick,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start instance `i`; report `Spawned` or `SpawnFailed`.
    Spawn(usize),
    /// Send `signo` to instance `i`'s process group, with honcho's
    /// `sending SIGTERM to web.1 (pid N)` line.
    Signal { i: usize, signo: i32 },
    /// A `system` line.
    Print(String),
    /// Shutdown has begun: `/health` answers 503 from now on.
    ShuttingDown,
    /// Every process has stopped: SIGTERM (or, with `kill`, SIGKILL) to leftover descendants.
    Sweep { kill: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The release phase: `release[k]` runs.
    Release(usize),
    Running,
    /// A shutdown signal arrived; the stop signals go out at `until`.
    Draining {
        until: Instant,
    },
    /// Stop signals are out (in stages, dependants first); SIGKILL at `deadline`.
    Stopping {
        deadline: Instant,
        killed: bool,
    },
    /// Every process has stopped; leftovers get SIGKILL at `deadline`.
    Sweeping {
        deadline: Instant,
        killed: bool,
    },
}

#[derive(Debug, Clone)]
struct Proc {
    spec: Spec,
    state: State,
    /// Restarts so far.
    restarts: u32,
    /// When the restarts within `RESTART_WINDOW` happened.
    recent: VecDeque<Instant>,
    /// Restarts since it last stayed up `STABLE_AFTER` (the backoff's exponent).
    streak: u32,
}

/// The run's state.
#[derive(Debug)]
pub(crate) struct Machine {
    procs: Vec<Proc>,
    /// The release phase: instance indexes in order.
    release: Vec<usize>,
    settings: Settings,
    phase: Phase,
    /// The code of the first process that stopped for good (and may not die).
    exit_code: Option<i32>,
    /// 128+N of the last shutdown signal.
    signal_code: Option<i32>,
    /// Shutdown signals counted (repeats within `SAME_SIGNAL` count once).
    shutdown_signals: u32,
    last_signal: Option<(i32, Instant)>,
    /// For each instance, the instances that depend on it.
    dependants: Vec<Vec<usize>>,
    /// How many instances are `Stopped`, and how many `BackingOff` (so that no event costs
    /// a pass over every process: runs of thousands of processes stay linear).
    stopped: usize,
    backing_off: usize,
    /// Instances whose view changed since `take_changed`.
    changed: Vec<usize>,
    dirty: Vec<bool>,
}

/// What observers may know of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) state: &'static str,
    pub(crate) pid: Option<i32>,
    pub(crate) ready: bool,
    pub(crate) restarts: u32,
    pub(crate) exit: Option<Status>,
}

impl Machine {
    pub(crate) fn new(specs: Vec<Spec>, settings: Settings) -> Machine {
        let mut release: Vec<usize> = (0..specs.len())
            .filter(|&i| specs[i].before.is_some())
            .collect();
        release.sort_by_key(|&i| (specs[i].before, i));
        let mut dependants = vec![Vec::new(); specs.len()];
        for (i, s) in specs.iter().enumerate() {
            for &d in &s.deps {
                dependants[d].push(i);
            }
        }
        let n = specs.len();
        let procs = specs
            .into_iter()
            .map(|spec| Proc {
                spec,
                state: State::Waiting,
                restarts: 0,
                recent: VecDeque::new(),
                streak: 0,
            })
            .collect();
        Machine {
            procs,
            release,
            settings,
            phase: Phase::Running,
            exit_code: None,
            signal_code: None,
            shutdown_signals: 0,
            last_signal: None,
            dependants,
            stopped: 0,
            backing_off: 0,
            changed: Vec::new(),
            dirty: vec![false; n],
        }
    }

    /// Moves instance `i` to `state`, keeping the counts.
    fn set_state(&mut self, i: usize, state: State) {
        let old = std::mem::replace(&mut self.procs[i].state, state);
        let was = (
            matches!(old, State::Stopped { .. }),
            matches!(old, State::BackingOff { .. }),
        );
        let is = (
            matches!(state, State::Stopped { .. }),
            matches!(state, State::BackingOff { .. }),
        );
        self.stopped = self.stopped + usize::from(is.0) - usize::from(was.0);
        self.backing_off = self.backing_off + usize::from(is.1) - usize::from(was.1);
        self.touch(i);
    }

    /// Instance `i`'s view may have changed.
    fn touch(&mut self, i: usize) {
        if !std::mem::replace(&mut self.dirty[i], true) {
            self.changed.push(i);
        }
    }

    /// The instances whose view changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Vec<usize> {
        for &i in &self.changed {
            self.dirty[i] = false;
        }
        std::mem::take(&mut self.changed)
    }

    /// Begins the run: the first release instance, or everything without dependencies.
    pub(crate) fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.release.first() {
            Some(&first) => {
                self.phase = Phase::Release(0);
                self.spawn(first, &mut out);
            }
            None => self.start_all_waiters(&mut out),
        }
        self.check_all_stopped(now, &mut out);
        out
    }

    /// Applies one event; returns what to do, in order.
    pub(crate) fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Spawned { i, pid } => self.on_spawned(i, pid, now, &mut out),
            Event::SpawnFailed { i, reason } => {
                out.push(Action::Print(format!(
                    "cannot start {}: {reason}",
                    self.procs[i].spec.name
                )));
                self.set_state(i, State::Stopped { status: None });
                self.exit_code.get_or_insert(crate::error::EXIT_BAD_INPUT);
                self.begin_shutdown(false, now, &mut out);
                self.gone(i, &mut out);
            }
            Event::Exited { i, status } => {
                if let State::Running { exited, .. } = &mut self.procs[i].state
                    && exited.is_none()
                {
                    *exited = Some(status);
                    self.touch(i);
                    self.gone(i, &mut out);
                }
                self.maybe_finished(i, now, &mut out);
            }
            Event::OutputDone { i } => {
                if let State::Running { output_done, .. } = &mut self.procs[i].state {
                    *output_done = true;
                }
                self.maybe_finished(i, now, &mut out);
            }
            Event::Ready { i } => {
                if let State::Running { ready, .. } = &mut self.procs[i].state
                    && !*ready
                {
                    *ready = true;
                    self.touch(i);
                    self.start_dependants(i, &mut out);
                }
            }
            Event::Signal { signo } => self.on_signal(signo, now, &mut out),
            Event::Tick => {}
        }
        self.on_deadlines(now, &mut out);
        self.check_all_stopped(now, &mut out);
        out
    }

    /// The next time something is due (a [`Event::Tick`] at or after it makes progress).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Draining { until } => Some(until),
            Phase::Stopping {
                deadline,
                killed: false,
            }
            | Phase::Sweeping {
                deadline,
                killed: false,
            } => Some(deadline),
            _ => None,
        };
        let backoffs = (self.backing_off > 0)
            .then(|| {
                self.procs.iter().filter_map(|p| match p.state {
                    State::BackingOff { until } => Some(until),
                    _ => None,
                })
            })
            .into_iter()
            .flatten();
        phase.into_iter().chain(backoffs).min()
    }

    /// Whether instance `i` is still to be spawned (a `Spawn` action may have been cancelled
    /// by a shutdown that came after it).
    pub(crate) fn spawn_pending(&self, i: usize) -> bool {
        self.procs[i].state == State::Spawning
    }

    /// Every process has stopped and the leftovers were told to go: the run is over once
    /// procrun has no children left.
    pub(crate) fn sweeping(&self) -> bool {
        matches!(self.phase, Phase::Sweeping { .. })
    }

    /// Shutdown has begun (a drain, stop signals or the sweep).
    pub(crate) fn shutting_down(&self) -> bool {
        !matches!(self.phase, Phase::Release(_) | Phase::Running)
    }

    /// More than one shutdown signal arrived: output may be cut short.
    pub(crate) fn escalated(&self) -> bool {
        self.shutdown_signals > 1
    }

    /// procrun's exit code (final once the run is over).
    pub(crate) fn exit_code(&self) -> i32 {
        self.signal_code.or(self.exit_code).unwrap_or(0)
    }

    /// What observers may know of instance `i`.
    pub(crate) fn view(&self, i: usize) -> View {
        let p = &self.procs[i];
        let (state, pid, ready, exit) = match p.state {
            State::Waiting | State::Spawning => ("waiting", None, false, None),
            // Exited (its output may still be draining): stopped, as observers see it.
            State::Running {
                pid,
                exited: Some(status),
                ..
            } => ("stopped", Some(pid), false, Some(status)),
            State::Running { pid, ready, .. } => {
                let label = if ready { "running" } else { "starting" };
                (label, Some(pid), ready, None)
            }
            State::BackingOff { .. } => ("backing off", None, false, None),
            State::Stopped { status } => ("stopped", None, false, status),
        };
        View {
            state,
            pid,
            ready,
            restarts: p.restarts,
            exit,
        }
    }

    fn spawn(&mut self, i: usize, out: &mut Vec<Action>) {
        self.set_state(i, State::Spawning);
        out.push(Action::Spawn(i));
    }

    fn on_spawned(&mut self, i: usize, pid: i32, now: Instant, out: &mut Vec<Action>) {
        let ready = !self.procs[i].spec.has_check;
        self.set_state(
            i,
            State::Running {
                pid,
                since: now,
                ready,
                exited: None,
                output_done: false,
                stop_sent: false,
                kill_sent: false,
            },
        );
        // Started while stopping (a spawn that was already on its way): stop it too.
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Sweeping { .. }) {
            self.maybe_stop(i, out);
        } else if ready {
            self.start_dependants(i, out);
        }
    }

    /// Starts waiting instance `j` (not a release one) if its dependencies are all ready.
    fn try_start(&mut self, j: usize, out: &mut Vec<Action>) {
        let p = &self.procs[j];
        if p.state != State::Waiting || p.spec.before.is_some() {
            return;
        }
        let deps_ready = p.spec.deps.iter().all(|&d| {
            matches!(
                self.procs[d].state,
                State::Running {
                    ready: true,
                    exited: None,
                    ..
                }
            )
        });
        if deps_ready {
            self.spawn(j, out);
        }
    }

    /// Starts every waiting instance whose dependencies are ready (after the release phase).
    fn start_all_waiters(&mut self, out: &mut Vec<Action>) {
        for j in 0..self.procs.len() {
            self.try_start(j, out);
        }
    }

    /// Instance `i` became ready: start what waited for it.
    fn start_dependants(&mut self, i: usize, out: &mut Vec<Action>) {
        if self.phase != Phase::Running {
            return;
        }
        for k in 0..self.dependants[i].len() {
            let j = self.dependants[i][k];
            self.try_start(j, out);
        }
    }

    /// Instance `i` is gone (exited, or will never run): while stopping, what it depended on
    /// may be stopped now.
    fn gone(&mut self, i: usize, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopping { .. }) {
            for k in 0..self.procs[i].spec.deps.len() {
                let d = self.procs[i].spec.deps[k];
                self.maybe_stop(d, out);
            }
        }
    }

    fn maybe_finished(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        if let State::Running {
            exited: Some(status),
            output_done: true,
            since,
            ..
        } = self.procs[i].state
        {
            self.on_stopped(i, status, since, now, out);
        }
    }

    /// Instance `i` exited and its output is through.
    fn on_stopped(
        &mut self,
        i: usize,
        status: Status,
        since: Instant,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let name = self.procs[i].spec.name.clone();
        out.push(Action::Print(format!(
            "{name} stopped (rc={})",
            status.rc()
        )));
        match self.phase {
            Phase::Release(k) if self.release.get(k) == Some(&i) => {
                self.set_state(
                    i,
                    State::Stopped {
                        status: Some(status),
                    },
                );
                if status == Status::Code(0) {
                    match self.release.get(k + 1) {
                        Some(&next) => {
                            self.phase = Phase::Release(k + 1);
                            self.spawn(next, out);
                        }
                        None => {
                            self.phase = Phase::Running;
                            self.start_all_waiters(out);
                        }
                    }
                } else {
                    out.push(Action::Print(format!(
                        "release phase failed: {name} exited with {}; nothing else starts",
                        status.code()
                    )));
                    self.exit_code.get_or_insert(status.code());
                    self.begin_shutdown(false, now, out);
                }
            }
            Phase::Running if self.procs[i].spec.auto_restart => {
                self.restart_or_stop(i, status, since, now, out);
            }
            _ => self.stopped_for_good(i, status, now, out),
        }
    }

    fn restart_or_stop(
        &mut self,
        i: usize,
        status: Status,
        since: Instant,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let limit = self.settings.restart_limit;
        let p = &mut self.procs[i];
        while p
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= RESTART_WINDOW)
        {
            p.recent.pop_front();
        }
        if p.recent.len() >= limit as usize {
            out.push(Action::Print(format!(
                "{} restarted {} times within {}s: not restarting it again",
                p.spec.name,
                p.recent.len(),
                RESTART_WINDOW.as_secs()
            )));
            self.stopped_for_good(i, status, now, out);
            return;
        }
        if now.saturating_duration_since(since) >= STABLE_AFTER {
            p.streak = 0;
        }
        let delay = self
            .settings
            .backoff
            .saturating_mul(1 << p.streak.min(16))
            .min(BACKOFF_MAX);
        p.streak += 1;
        p.restarts += 1;
        p.recent.push_back(now);
        out.push(Action::Print(format!(
            "{} restarting in {} (restart {} of {limit}, rc={})",
            p.spec.name,
            seconds(delay),
            p.recent.len(),
            status.rc()
        )));
        self.set_state(i, State::BackingOff { until: now + delay });
    }

    fn stopped_for_good(&mut self, i: usize, status: Status, now: Instant, out: &mut Vec<Action>) {
        self.set_state(
            i,
            State::Stopped {
                status: Some(status),
            },
        );
        if self.procs[i].spec.can_die {
            self.abandon_dependants(i, now, out);
        } else {
            self.exit_code.get_or_insert(status.code());
            self.begin_shutdown(false, now, out);
        }
    }

    /// `i` stopped for good: instances still waiting for it will never start.
    fn abandon_dependants(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        let stuck: Vec<usize> = self.dependants[i]
            .iter()
            .copied()
            .filter(|&j| self.procs[j].state == State::Waiting)
            .collect();
        for j in stuck {
            out.push(Action::Print(format!(
                "{} will not start: {} stopped before it was ready",
                self.procs[j].spec.name, self.procs[i].spec.name
            )));
            self.set_state(j, State::Stopped { status: None });
            if !self.procs[j].spec.can_die {
                self.exit_code.get_or_insert(crate::error::EXIT_BAD_INPUT);
                self.begin_shutdown(false, now, out);
            } else {
                self.abandon_dependants(j, now, out);
            }
        }
    }

    fn on_signal(&mut self, signo: i32, now: Instant, out: &mut Vec<Action>) {
        if let Some((last, at)) = self.last_signal
            && last == signo
            && now.saturating_duration_since(at) < SAME_SIGNAL
        {
            return;
        }
        self.last_signal = Some((signo, now));
        out.push(Action::Print(format!("{} received", signal_name(signo))));
        self.signal_code = Some(128 + signo);
        self.shutdown_signals += 1;
        if self.shutdown_signals == 1 {
            self.begin_shutdown(true, now, out);
            return;
        }
        match self.phase {
            // A second signal skips the rest of the drain.
            Phase::Draining { .. } => self.begin_stopping(now, out),
            _ => self.kill_all(out),
        }
    }

    fn begin_shutdown(&mut self, by_signal: bool, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Running if by_signal && !self.settings.drain.is_zero() => {
                self.phase = Phase::Draining {
                    until: now + self.settings.drain,
                };
                out.push(Action::ShuttingDown);
                out.push(Action::Print(format!(
                    "draining: /health answers 503; stopping in {}",
                    seconds(self.settings.drain)
                )));
                self.cancel_pending(out);
            }
            Phase::Release(_) | Phase::Running => self.begin_stopping(now, out),
            _ => {}
        }
    }

    /// Instances that have not started (or wait for a restart) never will.
    fn cancel_pending(&mut self, out: &mut Vec<Action>) {
        for i in 0..self.procs.len() {
            match self.procs[i].state {
                // A spawn asked for but not carried out yet is not carried out at all.
                State::Waiting | State::Spawning => {
                    self.set_state(i, State::Stopped { status: None })
                }
                State::BackingOff { .. } => {
                    out.push(Action::Print(format!(
                        "{} will not be restarted: procrun is stopping",
                        self.procs[i].spec.name
                    )));
                    self.set_state(i, State::Stopped { status: None });
                }
                _ => {}
            }
        }
    }

    fn begin_stopping(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Draining { .. }) {
            out.push(Action::ShuttingDown);
        }
        self.phase = Phase::Stopping {
            deadline: now + self.settings.timeout,
            killed: false,
        };
        self.cancel_pending(out);
        self.stop_eligible(out);
    }

    /// Sends the stop signal to every live instance no other live instance depends on
    /// (dependants go first; what they depend on follows once they are gone).
    fn stop_eligible(&mut self, out: &mut Vec<Action>) {
        for i in 0..self.procs.len() {
            self.maybe_stop(i, out);
        }
    }

    /// Sends instance `i` its stop signal if it runs, has not had it, and nothing that
    /// depends on it is still alive.
    fn maybe_stop(&mut self, i: usize, out: &mut Vec<Action>) {
        let needed = self.dependants[i].iter().any(|&j| {
            matches!(
                self.procs[j].state,
                State::Spawning | State::Running { exited: None, .. }
            )
        });
        if needed {
            return;
        }
        let signo = self.procs[i].spec.stop_signal;
        if let State::Running {
            exited: None,
            stop_sent: stop_sent @ false,
            ..
        } = &mut self.procs[i].state
        {
            *stop_sent = true;
            out.push(Action::Signal { i, signo });
        }
    }

    fn kill_all(&mut self, out: &mut Vec<Action>) {
        for (i, p) in self.procs.iter_mut().enumerate() {
            if let State::Running {
                exited: None,
                kill_sent: kill_sent @ false,
                ..
            } = &mut p.state
            {
                *kill_sent = true;
                out.push(Action::Signal { i, signo: SIGKILL });
            }
        }
        match &mut self.phase {
            Phase::Stopping { killed, .. } => *killed = true,
            Phase::Sweeping { killed, .. } if !*killed => {
                *killed = true;
                out.push(Action::Sweep { kill: true });
            }
            _ => {}
        }
    }

    fn on_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Draining { until } if now >= until => self.begin_stopping(now, out),
            Phase::Stopping {
                deadline,
                killed: false,
            }
            | Phase::Sweeping {
                deadline,
                killed: false,
            } if now >= deadline => self.kill_all(out),
            _ => {}
        }
        if self.phase == Phase::Running && self.backing_off > 0 {
            let due: Vec<usize> = (0..self.procs.len())
                .filter(
                    |&i| matches!(self.procs[i].state, State::BackingOff { until } if now >= until),
                )
                .collect();
            for i in due {
                self.spawn(i, out);
            }
        }
    }

    /// Once every process has stopped for good, the sweep of leftovers begins.
    fn check_all_stopped(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.sweeping() || self.stopped < self.procs.len() {
            return;
        }
        if matches!(self.phase, Phase::Release(_) | Phase::Running) {
            out.push(Action::ShuttingDown);
        }
        let grace_end = match self.phase {
            Phase::Stopping { deadline, .. } => deadline,
            _ => now + self.settings.timeout,
        };
        let deadline = if self.escalated() {
            now
        } else {
            grace_end.max(now + SWEEP_GRACE)
        };
        self.phase = Phase::Sweeping {
            deadline,
            killed: false,
        };
        out.push(Action::Sweep { kill: false });
        if self.escalated() {
            self.kill_all(out);
        }
    }
}

/// `SIGTERM` for 15, `signal 64` for what has no name.
pub(crate) fn signal_name(signo: i32) -> String {
    nix::sys::signal::Signal::try_from(signo)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signo}"))
}

/// `0.4s`, `2s`, `30s`.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        let text = format!("{:.3}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: i32 = libc::SIGTERM;
    const INT: i32 = libc::SIGINT;
    const QUIT: i32 = libc::SIGQUIT;

    fn spec(name: &str) -> Spec {
        Spec {
            name: name.into(),
            before: None,
            can_die: false,
            auto_restart: false,
            stop_signal: TERM,
            deps: Vec::new(),
            has_check: false,
        }
    }

    fn settings() -> Settings {
        Settings {
            timeout: Duration::from_secs(5),
            drain: Duration::ZERO,
            restart_limit: 5,
            backoff: Duration::from_millis(200),
        }
    }

    /// A machine driven by a fake clock; every action is recorded as text.
    struct Run {
        m: Machine,
        t0: Instant,
        now: Instant,
        log: Vec<String>,
        next_pid: i32,
    }

    impl Run {
        fn new(specs: Vec<Spec>, settings: Settings) -> Run {
            let t0 = Instant::now();
            let mut r = Run {
                m: Machine::new(specs, settings),
                t0,
                now: t0,
                log: Vec::new(),
                next_pid: 100,
            };
            let actions = r.m.start(t0);
            r.apply(actions);
            r
        }

        /// Records actions; a spawn succeeds at once with the next pid.
        fn apply(&mut self, actions: Vec<Action>) {
            for a in actions {
                match a {
                    Action::Spawn(i) => {
                        self.log.push(format!("spawn {i}"));
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        let more = self.m.handle(Event::Spawned { i, pid }, self.now);
                        self.apply(more);
                    }
                    Action::Signal { i, signo } => {
                        self.log.push(format!("signal {i} {}", signal_name(signo)))
                    }
                    Action::Print(text) => self.log.push(text),
                    Action::ShuttingDown => self.log.push("shutting down".into()),
                    Action::Sweep { kill } => self.log.push(format!("sweep kill={kill}")),
                }
            }
        }

        fn event(&mut self, e: Event) -> &mut Self {
            let actions = self.m.handle(e, self.now);
            self.apply(actions);
            self
        }

        /// Exit and end of output together.
        fn stop(&mut self, i: usize, status: Status) -> &mut Self {
            self.event(Event::Exited { i, status });
            self.event(Event::OutputDone { i })
        }

        fn at_ms(&mut self, ms: u64) -> &mut Self {
            self.now = self.t0 + Duration::from_millis(ms);
            self.event(Event::Tick)
        }

        fn take(&mut self) -> Vec<String> {
            std::mem::take(&mut self.log)
        }
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn honcho_model_first_stop_ends_the_run() {
        let mut r = Run::new(vec![spec("web.1"), spec("worker.1")], settings());
        assert_eq!(r.take(), lines(&["spawn 0", "spawn 1"]));
        r.stop(1, Status::Code(3));
        assert_eq!(
            r.take(),
            lines(&[
                "worker.1 stopped (rc=3)",
                "shutting down",
                "signal 0 SIGTERM"
            ])
        );
        r.stop(0, Status::Signal(TERM));
        assert_eq!(
            r.take(),
            lines(&["web.1 stopped (rc=-15)", "sweep kill=false"])
        );
        assert!(r.m.sweeping());
        assert_eq!(r.m.exit_code(), 3);
    }

    #[test]
    fn exit_and_output_in_either_order() {
        let mut r = Run::new(vec![spec("web.1")], settings());
        r.take();
        r.event(Event::OutputDone { i: 0 });
        assert!(r.take().is_empty(), "still running until reaped");
        r.event(Event::Exited {
            i: 0,
            status: Status::Code(0),
        });
        assert_eq!(r.take()[0], "web.1 stopped (rc=0)");
        assert_eq!(r.m.exit_code(), 0);
    }

    #[test]
    fn sigkill_at_the_deadline_once() {
        let mut r = Run::new(vec![spec("a.1"), spec("b.1")], settings());
        r.take();
        r.event(Event::Signal { signo: TERM });
        assert_eq!(
            r.take(),
            lines(&[
                "SIGTERM received",
                "shutting down",
                "signal 0 SIGTERM",
                "signal 1 SIGTERM"
            ])
        );
        assert_eq!(r.m.next_deadline(), Some(r.t0 + Duration::from_secs(5)));
        r.at_ms(4999);
        assert!(r.take().is_empty());
        r.at_ms(5000);
        assert_eq!(r.take(), lines(&["signal 0 SIGKILL", "signal 1 SIGKILL"]));
        r.at_ms(6000);
        assert!(r.take().is_empty());
        r.stop(0, Status::Signal(9)).stop(1, Status::Signal(9));
        assert_eq!(r.m.exit_code(), 143);
    }

    #[test]
    fn repeated_signal_within_100ms_counts_once_a_later_one_escalates() {
        let mut r = Run::new(vec![spec("web.1")], settings());
        r.take();
        r.event(Event::Signal { signo: TERM });
        r.at_ms(50).event(Event::Signal { signo: TERM });
        let log = r.take();
        assert_eq!(log.iter().filter(|l| *l == "SIGTERM received").count(), 1);
        assert!(!log.iter().any(|l| l.contains("SIGKILL")), "{log:?}");
        assert!(!r.m.escalated());
        r.at_ms(300).event(Event::Signal { signo: INT });
        assert_eq!(r.take(), lines(&["SIGINT received", "signal 0 SIGKILL"]));
        assert!(r.m.escalated());
        assert_eq!(r.m.exit_code(), 130);
        // A different signal at once is a second signal.
        let mut r = Run::new(vec![spec("web.1")], settings());
        r.event(Event::Signal { signo: TERM })
            .event(Event::Signal { signo: INT });
        assert!(r.m.escalated());
    }

    #[test]
    fn view_follows_a_process_through_its_life() {
        let mut release = spec("release.1");
        release.before = Some(0);
        let mut web = spec("web.1");
        web.has_check = true;
        let mut r = Run::new(vec![release, web], settings());
        let seen = |r: &Run| {
            let v = r.m.view(1);
            (v.state, v.pid, v.ready, v.exit)
        };
        assert_eq!(seen(&r), ("waiting", None, false, None));
        r.stop(0, Status::Code(0));
        assert_eq!(seen(&r), ("starting", Some(101), false, None));
        r.event(Event::Ready { i: 1 });
        assert_eq!(seen(&r), ("running", Some(101), true, None));
        // Reaped, output still draining: observers already see it stopped, with its code.
        r.event(Event::Exited {
            i: 1,
            status: Status::Code(137),
        });
        let code = Some(Status::Code(137));
        assert_eq!(seen(&r), ("stopped", Some(101), false, code));
        r.event(Event::OutputDone { i: 1 });
        assert_eq!(seen(&r), ("stopped", None, false, code));
    }

    #[test]
    fn release_phase_runs_each_to_completion_then_the_rest() {
        let mut migrate = spec("migrate.1");
        migrate.before = Some(0);
        let mut release = spec("release.1");
        release.before = Some(1);
        let mut r = Run::new(vec![spec("web.1"), release, migrate], settings());
        assert_eq!(r.take(), lines(&["spawn 2"]));
        assert_eq!(r.m.view(0).state, "waiting");
        r.stop(2, Status::Code(0));
        assert_eq!(r.take(), lines(&["migrate.1 stopped (rc=0)", "spawn 1"]));
        r.stop(1, Status::Code(0));
        assert_eq!(r.take(), lines(&["release.1 stopped (rc=0)", "spawn 0"]));
        assert!(!r.m.shutting_down());
    }

    #[test]
    fn failed_release_starts_nothing_and_sets_the_code() {
        let mut release = spec("release.1");
        release.before = Some(0);
        let mut r = Run::new(vec![release, spec("web.1")], settings());
        r.take();
        r.stop(0, Status::Code(4));
        assert_eq!(
            r.take(),
            lines(&[
                "release.1 stopped (rc=4)",
                "release phase failed: release.1 exited with 4; nothing else starts",
                "shutting down",
                "sweep kill=false"
            ])
        );
        assert_eq!(r.m.view(1).state, "stopped");
        assert_eq!(r.m.exit_code(), 4);
    }

    #[test]
    fn signal_during_release_phase() {
        let mut release = spec("release.1");
        release.before = Some(0);
        let mut r = Run::new(vec![release, spec("web.1")], settings());
        r.take();
        r.event(Event::Signal { signo: INT });
        assert_eq!(
            r.take(),
            lines(&["SIGINT received", "shutting down", "signal 0 SIGTERM"])
        );
        r.stop(0, Status::Signal(TERM));
        assert_eq!(
            r.take(),
            lines(&["release.1 stopped (rc=-15)", "sweep kill=false"])
        );
        assert_eq!(r.m.exit_code(), 130);
    }

    #[test]
    fn can_die_goes_and_the_rest_goes_on() {
        let mut once = spec("once.1");
        once.can_die = true;
        let mut r = Run::new(vec![once, spec("web.1")], settings());
        r.take();
        r.stop(0, Status::Code(1));
        assert_eq!(r.take(), lines(&["once.1 stopped (rc=1)"]));
        assert!(!r.m.shutting_down());
        r.stop(1, Status::Code(0));
        assert_eq!(r.m.exit_code(), 0, "can-die sets no exit code");
        assert!(r.m.sweeping());
    }

    #[test]
    fn when_everything_may_die_the_last_stop_ends_the_run() {
        let mut a = spec("a.1");
        a.can_die = true;
        let mut b = spec("b.1");
        b.can_die = true;
        let mut r = Run::new(vec![a, b], settings());
        r.take();
        r.stop(0, Status::Code(2));
        assert!(!r.m.sweeping());
        r.stop(1, Status::Code(3));
        assert_eq!(
            r.take(),
            lines(&[
                "a.1 stopped (rc=2)",
                "b.1 stopped (rc=3)",
                "shutting down",
                "sweep kill=false"
            ])
        );
        assert_eq!(r.m.exit_code(), 0);
    }

    #[test]
    fn auto_restart_with_backoff_and_reset_after_a_stable_run() {
        let mut w = spec("worker.1");
        w.auto_restart = true;
        let mut r = Run::new(vec![spec("web.1"), w], settings());
        r.take();
        r.stop(1, Status::Code(1));
        assert_eq!(
            r.take(),
            lines(&[
                "worker.1 stopped (rc=1)",
                "worker.1 restarting in 0.2s (restart 1 of 5, rc=1)"
            ])
        );
        assert_eq!(r.m.view(1).state, "backing off");
        assert_eq!(r.m.next_deadline(), Some(r.t0 + Duration::from_millis(200)));
        r.at_ms(199);
        assert!(r.take().is_empty());
        r.at_ms(200);
        assert_eq!(r.take(), lines(&["spawn 1"]));
        r.stop(1, Status::Code(1));
        assert_eq!(
            r.take()[1],
            "worker.1 restarting in 0.4s (restart 2 of 5, rc=1)"
        );
        r.at_ms(600);
        r.take();
        // Up for 10 s: the next wait is the shortest again.
        r.at_ms(10_600).stop(1, Status::Code(0));
        assert_eq!(
            r.take()[1],
            "worker.1 restarting in 0.2s (restart 3 of 5, rc=0)"
        );
        assert_eq!(r.m.view(1).restarts, 3);
        assert!(!r.m.shutting_down());
    }

    #[test]
    fn crash_loop_hits_the_limit_and_ends_the_run_with_its_code() {
        let mut w = spec("worker.1");
        w.auto_restart = true;
        let mut s = settings();
        s.restart_limit = 3;
        s.backoff = Duration::ZERO;
        let mut r = Run::new(vec![spec("web.1"), w], s);
        for n in 1..=3 {
            r.stop(1, Status::Code(7));
            r.event(Event::Tick);
            assert!(r.take().contains(&format!(
                "worker.1 restarting in 0s (restart {n} of 3, rc=7)"
            )),);
        }
        r.stop(1, Status::Code(7));
        assert_eq!(
            r.take(),
            lines(&[
                "worker.1 stopped (rc=7)",
                "worker.1 restarted 3 times within 60s: not restarting it again",
                "shutting down",
                "signal 0 SIGTERM"
            ])
        );
        assert_eq!(r.m.exit_code(), 7);
        // Restarts spread over more than the window are not a crash loop.
        let mut w = spec("worker.1");
        w.auto_restart = true;
        let mut r = Run::new(vec![w], s);
        for n in 0..10u64 {
            r.at_ms(n * 30_000).stop(0, Status::Code(1));
            r.event(Event::Tick);
        }
        assert!(!r.m.shutting_down(), "{:?}", r.take());
    }

    #[test]
    fn shutdown_cancels_a_pending_restart() {
        let mut w = spec("worker.1");
        w.auto_restart = true;
        let mut r = Run::new(vec![w], settings());
        r.stop(0, Status::Code(1));
        r.take();
        r.event(Event::Signal { signo: TERM });
        assert_eq!(
            r.take(),
            lines(&[
                "SIGTERM received",
                "shutting down",
                "worker.1 will not be restarted: procrun is stopping",
                "sweep kill=false"
            ])
        );
        r.at_ms(1000);
        assert!(!r.take().contains(&"spawn 0".to_string()));
    }

    #[test]
    fn start_order_waits_for_readiness_and_stops_in_reverse() {
        let mut db = spec("db.1");
        db.has_check = true;
        let mut web = spec("web.1");
        web.deps = vec![0];
        let mut nginx = spec("nginx.1");
        nginx.deps = vec![1];
        nginx.stop_signal = QUIT;
        let mut r = Run::new(vec![db, web, nginx], settings());
        assert_eq!(r.take(), lines(&["spawn 0"]));
        assert_eq!(r.m.view(0).state, "starting");
        assert_eq!(r.m.view(1).state, "waiting");
        r.event(Event::Ready { i: 0 });
        // web has no check: ready as it runs, so nginx follows at once.
        assert_eq!(r.take(), lines(&["spawn 1", "spawn 2"]));
        r.event(Event::Signal { signo: TERM });
        assert_eq!(
            r.take(),
            lines(&["SIGTERM received", "shutting down", "signal 2 SIGQUIT"])
        );
        // What a process depends on is stopped as soon as the process is gone (reaped).
        r.stop(2, Status::Code(0));
        assert_eq!(
            r.take(),
            lines(&["signal 1 SIGTERM", "nginx.1 stopped (rc=0)"])
        );
        r.stop(1, Status::Code(0));
        assert_eq!(
            r.take(),
            lines(&["signal 0 SIGTERM", "web.1 stopped (rc=0)"])
        );
        // One budget: SIGKILL for what is left at the original deadline.
        r.at_ms(5000);
        assert_eq!(r.take(), lines(&["signal 0 SIGKILL"]));
    }

    #[test]
    fn a_dependency_that_stops_before_it_is_ready_ends_the_run() {
        let mut db = spec("db.1");
        db.has_check = true;
        let mut web = spec("web.1");
        web.deps = vec![0];
        let mut r = Run::new(vec![db, web], settings());
        r.take();
        r.stop(0, Status::Code(2));
        assert_eq!(
            r.take(),
            lines(&["db.1 stopped (rc=2)", "shutting down", "sweep kill=false"])
        );
        assert_eq!(r.m.exit_code(), 2);
        // One that may die: its dependants will never start.
        let mut db = spec("db.1");
        db.has_check = true;
        db.can_die = true;
        let mut web = spec("web.1");
        web.deps = vec![0];
        let mut r = Run::new(vec![db, web], settings());
        r.take();
        r.stop(0, Status::Code(0));
        assert_eq!(
            r.take(),
            lines(&[
                "db.1 stopped (rc=0)",
                "web.1 will not start: db.1 stopped before it was ready",
                "shutting down",
                "sweep kill=false"
            ])
        );
        assert_eq!(r.m.exit_code(), 1);
    }

    #[test]
    fn drain_waits_before_stopping_and_a_second_signal_skips_it() {
        let mut s = settings();
        s.drain = Duration::from_secs(3);
        let mut r = Run::new(vec![spec("web.1")], s);
        r.take();
        r.event(Event::Signal { signo: TERM });
        assert_eq!(
            r.take(),
            lines(&[
                "SIGTERM received",
                "shutting down",
                "draining: /health answers 503; stopping in 3s"
            ])
        );
        r.at_ms(2999);
        assert!(r.take().is_empty());
        r.at_ms(3000);
        assert_eq!(r.take(), lines(&["signal 0 SIGTERM"]));
        // Second signal during the drain: stop now (gracefully); a third kills.
        let mut r = Run::new(vec![spec("web.1")], s);
        r.event(Event::Signal { signo: TERM });
        r.take();
        r.at_ms(1000).event(Event::Signal { signo: TERM });
        assert_eq!(r.take(), lines(&["SIGTERM received", "signal 0 SIGTERM"]));
        r.at_ms(2000).event(Event::Signal { signo: TERM });
        assert_eq!(r.take(), lines(&["SIGTERM received", "signal 0 SIGKILL"]));
        // A process stop is no signal: no drain.
        let mut r = Run::new(vec![spec("a.1"), spec("b.1")], s);
        r.take();
        r.stop(0, Status::Code(0));
        assert_eq!(r.take()[2], "signal 1 SIGTERM");
    }

    #[test]
    fn spawn_failure_stops_everything_with_1() {
        let mut r = Run::new(vec![spec("a.1"), spec("b.1")], settings());
        r.take();
        r.event(Event::SpawnFailed {
            i: 1,
            reason: "Too many open files".into(),
        });
        assert_eq!(
            r.take(),
            lines(&[
                "cannot start b.1: Too many open files",
                "shutting down",
                "signal 0 SIGTERM"
            ])
        );
        r.stop(0, Status::Signal(TERM));
        assert_eq!(r.m.exit_code(), 1);
    }

    #[test]
    fn a_failed_spawn_cancels_the_spawns_not_carried_out_yet() {
        let mut m = Machine::new(vec![spec("a.1"), spec("b.1"), spec("c.1")], settings());
        let now = Instant::now();
        assert_eq!(
            m.start(now),
            vec![Action::Spawn(0), Action::Spawn(1), Action::Spawn(2)]
        );
        m.handle(Event::Spawned { i: 0, pid: 10 }, now);
        let out = m.handle(
            Event::SpawnFailed {
                i: 1,
                reason: "Too many open files".into(),
            },
            now,
        );
        assert!(
            out.contains(&Action::Signal { i: 0, signo: TERM }),
            "{out:?}"
        );
        assert!(!m.spawn_pending(2));
        assert_eq!(m.view(2).state, "stopped");
    }

    #[test]
    fn second_signal_after_everything_stopped_kills_leftovers_at_once() {
        let mut r = Run::new(vec![spec("web.1")], settings());
        r.event(Event::Signal { signo: TERM });
        r.stop(0, Status::Code(0));
        r.take();
        r.at_ms(500).event(Event::Signal { signo: INT });
        assert_eq!(r.take(), lines(&["SIGINT received", "sweep kill=true"]));
    }

    #[test]
    fn seconds_text() {
        let cases = [
            (0, "0s"),
            (200, "0.2s"),
            (400, "0.4s"),
            (1500, "1.5s"),
            (30_000, "30s"),
            (125, "0.125s"),
        ];
        for (ms, want) in cases {
            assert_eq!(seconds(Duration::from_millis(ms)), want);
        }
    }
}
