//! `procrun start`: the event loop.
//!
//! Theory of operation. One task on a current-thread runtime owns all state and `select!`s
//! over three sources: the signalfd (SIGCHLD → reap; INT/TERM/HUP/QUIT → shutdown; USR1, USR2,
//! WINCH, CONT → forwarded), end-of-output events from the pipe readers, and the next deadline.
//! Pipe readers are local tasks that turn bytes into whole lines and hand them to the printer
//! as they arrive. What observers may read (the status endpoint, readiness checks) is published
//! on the `Board` as processes start and stop.
//!
//! A process *stops* when its shell is reaped and its pipe has reached EOF, or `DRAIN` after the
//! reap if a background job still holds the pipe. The first process to stop ends the run:
//! SIGTERM to every other group, SIGKILL to those still alive after `--timeout`. When every
//! managed process has stopped, leftover descendants (background jobs, daemons that escaped
//! their group) get SIGTERM, then SIGKILL after the rest of the grace; procrun exits once it has
//! no children and the pipes are drained.

use super::board::Board;
use super::reaper::{self, Children};
use super::spawn::{self, BaseEnv};
use crate::config::Instance;
use crate::output::lines::LineSplitter;
use crate::output::printer::{Printer, Style};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long after its shell exits a process's pipe may stay open before it counts as stopped.
const DRAIN: Duration = Duration::from_millis(200);
/// Minimum grace for leftover descendants in the final sweep.
const SWEEP_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for output pipes to close after everything is gone.
const FINAL_DRAIN: Duration = Duration::from_millis(500);
/// A partial line is printed after this long without more output.
const QUIET: Duration = Duration::from_millis(1000);
/// Longest line printed in one piece.
const LINE_LIMIT: usize = 64 * 1024;

/// A task that runs beside the supervisor until the run ends (the status endpoint).
pub(crate) type Service = Pin<Box<dyn Future<Output = ()>>>;

/// What `start` needs to run.
pub(crate) struct Plan {
    pub(crate) instances: Vec<Instance>,
    /// Each instance's variables on top of `base_env`.
    pub(crate) overlays: Vec<Vec<(String, String)>>,
    pub(crate) base_env: BaseEnv,
    /// Process types whose output is dropped.
    pub(crate) quiet: HashSet<String>,
    /// Grace between SIGTERM and SIGKILL.
    pub(crate) timeout: Duration,
    /// The signal mask procrun inherited, restored in children.
    pub(crate) mask: SigSet,
    /// Where the supervisor publishes its processes, when someone reads it.
    pub(crate) board: Option<Rc<Board>>,
    /// Local tasks to run beside the supervisor.
    pub(crate) services: Vec<Service>,
}

#[derive(Debug)]
struct Proc {
    name: String,
    pid: Pid,
    /// Set when the shell was reaped: its status and when.
    exit: Option<(WaitStatus, Instant)>,
    eof: bool,
    stopped: bool,
    term_sent: bool,
    kill_sent: bool,
}

/// Where the run is. In both stopping phases, `killed` says SIGKILL has gone out.
enum Phase {
    Running,
    /// Stopping the managed processes; SIGKILL to their groups at `deadline`.
    Stopping {
        deadline: Instant,
        killed: bool,
    },
    /// Managed processes are gone; leftover descendants get SIGKILL at `deadline`.
    Sweeping {
        deadline: Instant,
        killed: bool,
    },
}

impl Phase {
    /// When SIGKILL is due, if it has not gone out yet.
    fn kill_at(&self) -> Option<Instant> {
        match *self {
            Phase::Stopping {
                deadline,
                killed: false,
            }
            | Phase::Sweeping {
                deadline,
                killed: false,
            } => Some(deadline),
            _ => None,
        }
    }
}

struct Supervisor {
    procs: Vec<Proc>,
    printer: Rc<Printer>,
    phase: Phase,
    timeout: Duration,
    exit_code: Option<i32>,
    signal_code: Option<i32>,
    shutdown_signals: u32,
    signalled_groups: HashSet<i32>,
    no_children: bool,
    board: Option<Rc<Board>>,
}

enum Event {
    Eof(usize),
}

/// Runs the plan; returns procrun's exit code.
///
/// The children are forked first, before the output thread and the event loop are built, so
/// that their start-up overlaps procrun's own (their output waits in the pipes meanwhile).
pub(crate) fn run(mut plan: Plan, style: Style) -> i32 {
    reaper::become_subreaper();
    let mut spawned = Vec::with_capacity(plan.instances.len());
    let mut failure = None;
    for (inst, overlay) in plan.instances.iter().zip(&plan.overlays) {
        let argv = spawn::shell(&inst.command);
        match spawn::spawn(
            &argv,
            &plan.base_env,
            overlay,
            &plan.mask,
            spawn::Stdio3::Piped,
        ) {
            Ok(child) => spawned.push(child),
            Err(e) => {
                failure = Some(format!("cannot start {}: {e}", inst.name));
                break;
            }
        }
    }
    let names: Vec<&str> = plan.instances.iter().map(|i| i.name.as_str()).collect();
    let printer = match Printer::new(style, &names) {
        Ok(p) => Rc::new(p),
        Err(e) => {
            crate::warn(&format!("cannot start the output thread: {e}"));
            for child in &spawned {
                reaper::signal_group(child.pid, Signal::SIGKILL);
            }
            return crate::error::EXIT_BAD_INPUT;
        }
    };
    let services = std::mem::take(&mut plan.services);
    let code = crate::runtime::block_on_local(
        run_async(plan, services, Rc::clone(&printer), spawned, failure),
        crate::error::EXIT_BAD_INPUT,
    );
    let left = printer.finish(std::time::Instant::now() + Duration::from_secs(2));
    if left > 0 {
        crate::warn(&format!(
            "stdout is blocked: {left} bytes of output were not written"
        ));
    }
    code
}

async fn run_async(
    plan: Plan,
    services: Vec<Service>,
    printer: Rc<Printer>,
    spawned: Vec<spawn::Spawned>,
    failure: Option<String>,
) -> i32 {
    let Some(mut signals) = super::signals::Signals::open() else {
        return crate::error::EXIT_BAD_INPUT;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let read_buf = Rc::new(RefCell::new(vec![0u8; 64 * 1024]));
    let mut sup = Supervisor {
        procs: Vec::new(),
        printer: Rc::clone(&printer),
        phase: Phase::Running,
        timeout: plan.timeout,
        exit_code: None,
        signal_code: None,
        shutdown_signals: 0,
        signalled_groups: HashSet::new(),
        no_children: false,
        board: plan.board.clone(),
    };
    for (i, (inst, child)) in plan.instances.iter().zip(spawned).enumerate() {
        let quiet = plan.quiet.contains(&inst.type_name);
        if let Some(board) = &plan.board {
            board.started(i, child.pid.as_raw());
        }
        let index = printer.add_source(&inst.name, child.pid.as_raw() as u32, quiet);
        printer.system(&format!("{} started (pid={})", inst.name, child.pid));
        sup.procs.push(Proc {
            name: inst.name.clone(),
            pid: child.pid,
            exit: None,
            eof: false,
            stopped: false,
            term_sent: false,
            kill_sent: false,
        });
        if let Some(fd) = child.output {
            let reader = read_output(
                index,
                fd,
                Rc::clone(&printer),
                tx.clone(),
                Rc::clone(&read_buf),
            );
            tokio::task::spawn_local(reader);
        }
    }
    if let Some(message) = failure {
        crate::warn(&message);
        sup.exit_code = Some(crate::error::EXIT_BAD_INPUT);
        sup.begin_shutdown();
    }
    if let Some(board) = &plan.board {
        super::ready::spawn_pollers(board);
    }
    for service in services {
        tokio::task::spawn_local(service);
    }
    if sup.procs.is_empty() {
        return sup.exit_code.unwrap_or(0);
    }
    // A child may have exited before the loop started: reap once before waiting.
    sup.on_sigchld();
    loop {
        sup.advance();
        if sup.finished() {
            break;
        }
        let deadline = sup.next_deadline();
        tokio::select! {
            biased;
            signo = signals.recv() => sup.on_signal(signo),
            Some(Event::Eof(i)) = rx.recv() => sup.on_eof(i),
            _ = sleep_until_opt(deadline) => {}
        }
    }
    // Let the readers drain what is left in the pipes (everything is gone, so EOF is near).
    let drain_until = Instant::now() + FINAL_DRAIN;
    while sup.procs.iter().any(|p| !p.eof) {
        tokio::select! {
            Some(Event::Eof(i)) = rx.recv() => sup.on_eof(i),
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    sup.final_code()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    fn on_signal(&mut self, signo: i32) {
        let Ok(sig) = Signal::try_from(signo) else {
            return;
        };
        match sig {
            Signal::SIGCHLD => self.on_sigchld(),
            Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT => {
                self.printer.system(&format!("{} received", sig.as_str()));
                self.signal_code = Some(128 + signo);
                self.shutdown_signals += 1;
                if self.shutdown_signals == 1 {
                    self.begin_shutdown();
                } else {
                    self.kill_all();
                }
            }
            Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGWINCH | Signal::SIGCONT => {
                self.forward(sig);
            }
            Signal::SIGTSTP => {
                // Children lead their own sessions, so their groups are orphaned and would
                // discard SIGTSTP: stop them with SIGSTOP instead (dumb-init does the same).
                self.forward(Signal::SIGSTOP);
                if !reaper::is_pid1() {
                    reaper::signal_pid(Pid::this(), Signal::SIGSTOP);
                }
            }
            _ => {}
        }
    }

    fn on_sigchld(&mut self) {
        let now = Instant::now();
        let procs = &mut self.procs;
        let result = reaper::reap(|pid, status| {
            if let Some(p) = procs.iter_mut().find(|p| p.pid == pid && p.exit.is_none()) {
                p.exit = Some((status, now));
            }
        });
        self.no_children = result == Children::None;
    }

    /// Forwards a signal to the group of every process not yet reaped.
    fn forward(&self, sig: Signal) {
        for p in self.procs.iter().filter(|p| p.exit.is_none()) {
            reaper::signal_group(p.pid, sig);
        }
    }

    fn on_eof(&mut self, i: usize) {
        if let Some(p) = self.procs.get_mut(i) {
            p.eof = true;
        }
    }

    /// Applies every state change that is due now.
    fn advance(&mut self) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            let due = match p.exit {
                Some((_, at)) => p.eof || now >= at + DRAIN,
                None => false,
            };
            if !p.stopped && due {
                self.stop(i);
            }
        }
        if self.phase.kill_at().is_some_and(|at| now >= at) {
            self.kill_all();
        }
        if !matches!(self.phase, Phase::Sweeping { .. }) && self.procs.iter().all(|p| p.stopped) {
            self.begin_sweep();
        }
    }

    fn stop(&mut self, i: usize) {
        let p = &mut self.procs[i];
        p.stopped = true;
        let status = p.exit.map_or(WaitStatus::StillAlive, |(status, _)| status);
        let rc = match status {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, sig, _) => -(sig as i32),
            _ => 0,
        };
        let line = format!("{} stopped (rc={rc})", p.name);
        self.printer.system(&line);
        if let Some(board) = &self.board {
            board.stopped(i, crate::error::status_code(&status));
        }
        if self.exit_code.is_none() {
            self.exit_code = crate::error::status_code(&status);
        }
        if matches!(self.phase, Phase::Running) {
            self.begin_shutdown();
        }
    }

    fn begin_shutdown(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        self.phase = Phase::Stopping {
            deadline: Instant::now() + self.timeout,
            killed: false,
        };
        if let Some(board) = &self.board {
            board.set_stopping();
        }
        self.signal_running(Signal::SIGTERM);
    }

    /// Sends SIGTERM or SIGKILL to the group of every managed process not yet reaped, at most
    /// once per group and signal, with honcho's `sending SIG... to web.1 (pid N)` line.
    fn signal_running(&mut self, sig: Signal) {
        for p in self.procs.iter_mut().filter(|p| p.exit.is_none()) {
            let sent = if sig == Signal::SIGKILL {
                &mut p.kill_sent
            } else {
                &mut p.term_sent
            };
            if *sent {
                continue;
            }
            *sent = true;
            self.printer.system(&format!(
                "sending {} to {} (pid {})",
                sig.as_str(),
                p.name,
                p.pid
            ));
            reaper::signal_group(p.pid, sig);
            self.signalled_groups.insert(p.pid.as_raw());
            // A stopped process cannot act on SIGTERM until it is continued (systemd does the
            // same); running ones are not sent an extra signal.
            if sig == Signal::SIGTERM && super::procfs::is_stopped(p.pid) {
                reaper::signal_group(p.pid, Signal::SIGCONT);
            }
        }
    }

    /// SIGKILL to every managed group still running (once each), or, in the sweep, to every
    /// leftover descendant.
    fn kill_all(&mut self) {
        if matches!(self.phase, Phase::Running) {
            self.begin_shutdown();
        }
        self.signal_running(Signal::SIGKILL);
        let sweep_pending = matches!(self.phase, Phase::Sweeping { killed: false, .. });
        if sweep_pending {
            for (pid, _) in self.leftovers() {
                reaper::signal_pid(pid, Signal::SIGKILL);
            }
        }
        if let Phase::Stopping { killed, .. } | Phase::Sweeping { killed, .. } = &mut self.phase {
            *killed = true;
        }
    }

    /// Every managed process has stopped: terminate whatever descendants are left.
    fn begin_sweep(&mut self) {
        let grace_end = match self.phase {
            Phase::Stopping { deadline, .. } => deadline,
            _ => Instant::now() + self.timeout,
        };
        let escalated = self.shutdown_signals > 1;
        let deadline = if escalated {
            Instant::now()
        } else {
            grace_end.max(Instant::now() + SWEEP_GRACE)
        };
        let left = self.leftovers();
        let mut termed = 0;
        for (pid, pgid) in &left {
            // Members of groups that already got SIGTERM are not signalled twice.
            if !self.signalled_groups.contains(&pgid.as_raw()) {
                reaper::signal_pid(*pid, Signal::SIGTERM);
                termed += 1;
            }
        }
        if termed > 0 {
            self.printer
                .system(&format!("sending SIGTERM to {termed} leftover process(es)"));
        }
        self.phase = Phase::Sweeping {
            deadline,
            killed: false,
        };
    }

    /// Live descendants after a reaping pass. When `waitpid` reports no children there are
    /// none (an orphan is re-parented to procrun, the subreaper, before its parent can be
    /// reaped), so `/proc` is only read while something is left.
    fn leftovers(&mut self) -> Vec<(Pid, Pid)> {
        self.on_sigchld();
        if self.no_children {
            Vec::new()
        } else {
            reaper::descendants()
        }
    }

    fn finished(&mut self) -> bool {
        if !matches!(self.phase, Phase::Sweeping { .. }) {
            return false;
        }
        // Reap whatever exited (a coalesced SIGCHLD may still be pending).
        self.on_sigchld();
        self.no_children
    }

    fn next_deadline(&self) -> Option<Instant> {
        let drains = self
            .procs
            .iter()
            .filter(|p| !p.stopped)
            .filter_map(|p| p.exit.map(|(_, at)| at + DRAIN));
        let phase = self.phase.kill_at();
        drains.chain(phase).min()
    }

    fn final_code(&self) -> i32 {
        self.signal_code.or(self.exit_code).unwrap_or(0)
    }
}

/// Reads one process's pipe and prints its lines until EOF.
async fn read_output(
    index: usize,
    fd: OwnedFd,
    printer: Rc<Printer>,
    tx: mpsc::UnboundedSender<Event>,
    buf: Rc<RefCell<Vec<u8>>>,
) {
    let mut splitter = LineSplitter::new(LINE_LIMIT);
    let Ok(afd) = super::signals::register_pipe(fd) else {
        let _ = tx.send(Event::Eof(index));
        return;
    };
    loop {
        printer.wait_room().await;
        let ready = if splitter.has_partial() {
            tokio::select! {
                r = afd.readable() => Some(r),
                _ = tokio::time::sleep(QUIET) => None,
            }
        } else {
            Some(afd.readable().await)
        };
        let Some(ready) = ready else {
            printer.stamp_now();
            splitter.flush(|l| printer.line(index, l));
            printer.commit();
            continue;
        };
        let Ok(mut guard) = ready else { break };
        let mut buf = buf.borrow_mut();
        let result = guard.try_io(|inner| {
            nix::unistd::read(inner.get_ref(), &mut buf).map_err(std::io::Error::from)
        });
        match result {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                printer.stamp_now();
                splitter.feed(&buf[..n], |l| printer.line(index, l));
                printer.commit();
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => break,
            Err(_would_block) => {}
        }
    }
    printer.stamp_now();
    splitter.flush(|l| printer.line(index, l));
    printer.commit();
    let _ = tx.send(Event::Eof(index));
}
