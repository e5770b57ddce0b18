//! `procrun start`: the event loop around the lifecycle state machine.
//!
//! Theory of operation. Everything that can fail for lack of resources (the signalfd, the
//! runtime, the printer's thread) exists before the first fork, so a failure never leaves a
//! process behind. One task on a current-thread runtime owns all state and `select!`s over
//! the signalfd (SIGCHLD → reap; INT/TERM/HUP/QUIT → the machine; USR1, USR2, WINCH, CONT →
//! forwarded), end-of-output and readiness messages, and the next deadline. It turns each of
//! them into an [`Event`] for the [`Machine`], which decides everything (who starts, who gets
//! which signal when, restarts, the exit code), and carries out the [`Action`]s it returns.
//! Pipe readers are local tasks that hand whole lines to the printer as they arrive; the status
//! endpoint's tasks only read the board, which is published after every change.
//!
//! A process's output is *done* when its pipe reaches EOF, or when the pipe has stayed empty
//! for `DRAIN` after its shell exited (a background job holds it open); a pipe left unread
//! because stdout is behind is not empty, so nothing is ever cut short by a slow consumer. When
//! every process has stopped for good, leftover descendants are swept, then the last output is
//! read and written. Only a stdout that makes no progress at all for `STALL` during shutdown
//! (1 s after a second shutdown signal) makes procrun give up on the output, and then it says
//! exactly how many bytes it dropped.

use super::board::Board;
use super::machine::{Action, Event, Machine, Settings, Spec, Status};
use super::reader::{Reader, ReaderState};
use super::reaper::{self, Children};
use super::signals::Signals;
use super::spawn::{self, BaseEnv};
use crate::config::{Instance, Ready, Roles};
use crate::net::addr::HostPort;
use crate::net::check::{Expect, Target, check};
use crate::output::printer::{Printer, Style};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a process's pipe must stay empty after its shell exited before its output counts
/// as done (a background job may hold it open).
const DRAIN: Duration = Duration::from_millis(200);
/// How long the pipes must stay empty once every process is gone before procrun stops reading
/// them (only something outside procrun's tree can still hold them).
const FINAL_DRAIN: Duration = Duration::from_millis(500);
/// How long a stdout may make no progress at all during shutdown before its output is dropped.
const STALL: Duration = Duration::from_secs(10);
/// The same after a second shutdown signal.
const STALL_ESCALATED: Duration = Duration::from_secs(1);
/// How often output is looked at while a reader is busy or paused after its process exited.
const RECHECK: Duration = Duration::from_millis(50);
/// Readiness checks: pause until the first success, then between checks, and their timeout.
const READY_FIRST: Duration = Duration::from_millis(100);
const READY_INTERVAL: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Grace between the stop signals and SIGKILL.
    pub(crate) timeout: Duration,
    /// The signal mask procrun inherited, restored in children.
    pub(crate) mask: SigSet,
    /// Where the supervisor publishes its processes, when someone reads it.
    pub(crate) board: Option<Rc<Board>>,
    /// Local tasks to run beside the supervisor.
    pub(crate) services: Vec<Service>,
    pub(crate) roles: Roles,
    /// Readiness checks by process type.
    pub(crate) checks: Vec<(String, Ready)>,
}

/// The machine's view of the plan's instances.
fn specs(plan: &Plan) -> Vec<Spec> {
    let roles = &plan.roles;
    plan.instances
        .iter()
        .map(|inst| {
            let t = inst.type_name.as_str();
            let deps = roles
                .deps(t)
                .iter()
                .flat_map(|dep| {
                    plan.instances
                        .iter()
                        .enumerate()
                        .filter(move |(_, d)| d.type_name == *dep)
                        .map(|(j, _)| j)
                })
                .collect();
            Spec {
                name: inst.name.clone(),
                before: roles.before_index(t),
                can_die: roles.can_die(t),
                auto_restart: roles.auto_restart(t),
                stop_signal: roles.stop_signal(t),
                deps,
                has_check: plan.checks.iter().any(|(n, _)| n == t),
            }
        })
        .collect()
}

/// The I/O side of one instance.
#[derive(Default)]
struct Slot {
    /// Counts spawns, to tell a restarted process's messages from its predecessor's.
    generation: u32,
    /// The current process, until it is reaped.
    pid: Option<Pid>,
    reaped_at: Option<Instant>,
    reader: Option<Rc<ReaderState>>,
    /// False once the current process is reaped (readiness checks stop).
    alive: Rc<Cell<bool>>,
}

/// A readiness result.
struct ReadyMsg {
    index: usize,
    generation: u32,
    ok: bool,
}

/// Why procrun gave up on stdout, if it did.
#[derive(Clone, Copy)]
enum GaveUp {
    Stalled,
    Escalated,
}

struct Runner {
    machine: Machine,
    plan: Plan,
    slots: Vec<Slot>,
    printer: Rc<Printer>,
    /// Every reader not at EOF yet (a restarted process's old one included).
    readers: Vec<Rc<ReaderState>>,
    /// Wakes the loop when a reader reaches EOF.
    eof_tx: mpsc::UnboundedSender<()>,
    ready_tx: mpsc::UnboundedSender<ReadyMsg>,
    buf: Rc<RefCell<Vec<u8>>>,
    /// The groups that got their stop signal: which signal, and when (see `sweep`).
    signalled_groups: HashMap<i32, reaper::GroupSignal>,
    /// Managed processes not reaped yet, by pid.
    by_pid: HashMap<i32, usize>,
    /// Instances whose process exited and whose output is not reported done yet.
    draining: Vec<usize>,
    exec_errors: spawn::ExecErrors,
    gave_up: Option<GaveUp>,
}

/// Runs the plan; returns procrun's exit code.
pub(crate) fn run(mut plan: Plan, style: Style) -> i32 {
    reaper::become_subreaper();
    let names: Vec<&str> = plan.instances.iter().map(|i| i.name.as_str()).collect();
    let printer = match Printer::new(style, &names) {
        Ok(p) => Rc::new(p),
        Err(e) => {
            crate::warn(&format!("cannot start the output thread: {e}"));
            return crate::error::EXIT_BAD_INPUT;
        }
    };
    let services = std::mem::take(&mut plan.services);
    let (code, gave_up) = crate::runtime::block_on_local(
        run_async(plan, services, Rc::clone(&printer)),
        (crate::error::EXIT_BAD_INPUT, None),
    );
    let outcome = printer.finish();
    if outcome.dropped > 0 && !outcome.broken {
        let why = match gave_up {
            Some(GaveUp::Escalated) => "stopping at once after a second signal".to_string(),
            _ => format!("stdout made no progress for {}s", STALL.as_secs()),
        };
        crate::warn(&format!(
            "{why}: {} bytes of output were dropped",
            outcome.dropped
        ));
    }
    code
}

async fn run_async(
    plan: Plan,
    services: Vec<Service>,
    printer: Rc<Printer>,
) -> (i32, Option<GaveUp>) {
    let Some(mut signals) = Signals::open() else {
        return (crate::error::EXIT_BAD_INPUT, None);
    };
    let exec_errors = match spawn::ExecErrors::new() {
        Ok(e) => e,
        Err(e) => {
            crate::warn(&format!("cannot start: {e}"));
            return (crate::error::EXIT_BAD_INPUT, None);
        }
    };
    let (eof_tx, mut eof_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let settings = Settings {
        timeout: plan.timeout,
        drain: plan.roles.drain,
        restart_limit: plan.roles.restart_limit,
        backoff: plan.roles.restart_delay,
    };
    for inst in &plan.instances {
        let quiet = plan.quiet.contains(&inst.type_name);
        printer.add_source(&inst.name, 0, quiet);
    }
    let mut run = Runner {
        machine: Machine::new(specs(&plan), settings),
        slots: (0..plan.instances.len()).map(|_| Slot::default()).collect(),
        plan,
        printer,
        readers: Vec::new(),
        eof_tx,
        ready_tx,
        buf: Rc::new(RefCell::new(vec![0u8; 64 * 1024])),
        signalled_groups: HashMap::new(),
        by_pid: HashMap::new(),
        draining: Vec::new(),
        exec_errors,
        gave_up: None,
    };
    let actions = run.machine.start(Instant::now());
    run.execute(actions);
    for service in services {
        tokio::task::spawn_local(service);
    }
    run.supervise(&mut signals, &mut eof_rx, &mut ready_rx)
        .await;
    run.read_what_is_left(&mut signals, &mut eof_rx).await;
    run.flush(&mut signals).await;
    (run.machine.exit_code(), run.gave_up)
}

/// The earliest of some deadlines.
fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    /// The run: until every process has stopped and procrun has no child left.
    async fn supervise(
        &mut self,
        signals: &mut Signals,
        eof_rx: &mut mpsc::UnboundedReceiver<()>,
        ready_rx: &mut mpsc::UnboundedReceiver<ReadyMsg>,
    ) {
        // A child may have exited before the loop started: reap once before waiting.
        self.reap();
        loop {
            let now = Instant::now();
            self.check_outputs(now);
            self.feed(Event::Tick);
            self.check_stall(now);
            if self.machine.sweeping() {
                // Reap whatever exited (a coalesced SIGCHLD may still be pending).
                if self.reap() == Children::None {
                    return;
                }
            }
            let deadline = earliest(&[
                self.machine.next_deadline(),
                self.output_deadline(now),
                self.stall_deadline(now),
            ]);
            tokio::select! {
                biased;
                signo = signals.recv() => self.on_signal(signo),
                Some(_) = eof_rx.recv() => {}
                Some(msg) = ready_rx.recv() => self.on_ready(msg),
                _ = sleep_until(deadline) => {}
            }
        }
    }

    /// Every process is gone: reads what is left in the pipes, until each is at EOF or has
    /// stayed empty for `FINAL_DRAIN` (only something outside procrun's tree can still hold
    /// one open).
    async fn read_what_is_left(
        &mut self,
        signals: &mut Signals,
        eof_rx: &mut mpsc::UnboundedReceiver<()>,
    ) {
        let gone_at = Instant::now();
        loop {
            let now = Instant::now();
            self.readers.retain(|r| !r.eof.get());
            self.check_stall(now);
            if self
                .readers
                .iter()
                .all(|r| r.idle_for(FINAL_DRAIN, gone_at, now))
            {
                return;
            }
            let idle_at = self
                .readers
                .iter()
                .map(|r| {
                    r.idle_deadline(FINAL_DRAIN, gone_at)
                        .unwrap_or(now + RECHECK)
                })
                .max();
            tokio::select! {
                biased;
                signo = signals.recv() => self.on_signal(signo),
                Some(_) = eof_rx.recv() => {}
                _ = sleep_until(earliest(&[idle_at, self.stall_deadline(now)])) => {}
            }
        }
    }

    /// Waits until stdout has taken every byte (or is given up on).
    async fn flush(&mut self, signals: &mut Signals) {
        loop {
            let printer = Rc::clone(&self.printer);
            let progress = printer.progress();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let now = Instant::now();
            self.check_stall(now);
            if printer.flushed() || self.gave_up.is_some() {
                return;
            }
            tokio::select! {
                biased;
                signo = signals.recv() => self.on_signal(signo),
                _ = progress => {}
                _ = sleep_until(self.stall_deadline(now)) => {}
            }
        }
    }

    fn feed(&mut self, event: Event) {
        let actions = self.machine.handle(event, Instant::now());
        self.execute(actions);
    }

    /// Carries out actions in order (a spawn's result may bring more), then publishes.
    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Spawn(i) if !self.machine.spawn_pending(i) => {}
                Action::Spawn(i) => {
                    let event = self.spawn(i);
                    queue.extend(self.machine.handle(event, Instant::now()));
                }
                Action::Signal { i, signo } => self.signal(i, signo),
                Action::Print(text) => self.printer.system(&text),
                Action::ShuttingDown => {
                    if let Some(board) = &self.plan.board {
                        board.set_stopping();
                    }
                }
                Action::Sweep { kill } => self.sweep(kill),
            }
        }
        self.publish();
    }

    fn spawn(&mut self, i: usize) -> Event {
        let inst = &self.plan.instances[i];
        let argv = spawn::shell(&inst.command);
        let child = match spawn::spawn(
            spawn::SHELL,
            &argv,
            &self.plan.base_env,
            &self.plan.overlays[i],
            &self.plan.mask,
            spawn::Stdio3::Piped,
            &self.exec_errors,
        ) {
            Ok(child) => child,
            Err(e) => {
                return Event::SpawnFailed {
                    i,
                    reason: crate::error::reason(&e),
                };
            }
        };
        let pid = child.pid;
        self.by_pid.insert(pid.as_raw(), i);
        let slot = &mut self.slots[i];
        slot.generation += 1;
        slot.pid = Some(pid);
        slot.reaped_at = None;
        slot.alive = Rc::new(Cell::new(true));
        self.printer.set_pid(i, pid.as_raw() as u32);
        self.printer
            .system(&format!("{} started (pid={pid})", inst.name));
        let state = Rc::new(ReaderState::default());
        slot.reader = Some(Rc::clone(&state));
        if slot.generation > 1 {
            // A restart: forget the readers that are through (a long-lived run restarts
            // without bound; the first start of thousands of processes needs no pass).
            self.readers.retain(|r| !r.eof.get());
        }
        self.readers.push(Rc::clone(&state));
        if let Some(output) = child.output {
            let reader = Reader {
                index: i,
                output,
                printer: Rc::clone(&self.printer),
                state,
                done: self.eof_tx.clone(),
                buf: Rc::clone(&self.buf),
            };
            tokio::task::spawn_local(reader.run());
        } else {
            state.eof.set(true);
        }
        if let Some((_, ready)) = self.plan.checks.iter().find(|(t, _)| *t == inst.type_name)
            && let Ok(port) = u16::try_from(inst.port)
        {
            tokio::task::spawn_local(poll_ready(
                i,
                slot.generation,
                port,
                ready.clone(),
                Rc::clone(&slot.alive),
                self.ready_tx.clone(),
            ));
        }
        Event::Spawned {
            i,
            pid: pid.as_raw(),
        }
    }

    /// Sends `signo` to instance `i`'s group with honcho's line (never to a reaped leader).
    fn signal(&mut self, i: usize, signo: i32) {
        let Some(pid) = self.slots[i].pid else {
            return;
        };
        let Ok(sig) = Signal::try_from(signo) else {
            return;
        };
        self.printer.system(&format!(
            "sending {} to {} (pid {pid})",
            sig.as_str(),
            self.plan.instances[i].name
        ));
        self.signalled_groups
            .insert(pid.as_raw(), reaper::GroupSignal::send(pid, sig));
        // A stopped process cannot act on its stop signal until it is continued (systemd
        // does the same); running ones are not sent an extra signal. The leader may show D
        // rather than T: a shell that vforked a child which was stopped before its exec.
        if sig != Signal::SIGKILL
            && super::procfs::stat(pid.as_raw()).is_some_and(|s| matches!(s.state, 'T' | 't' | 'D'))
        {
            reaper::signal_group(pid, Signal::SIGCONT);
        }
    }

    /// Every managed process has stopped: SIGTERM (or SIGKILL) to leftover descendants; a
    /// member of a group that got its stop signal gets it again only if it missed it.
    fn sweep(&mut self, kill: bool) {
        let left = self.leftovers();
        if kill {
            for (pid, _) in left {
                reaper::signal_pid(pid, Signal::SIGKILL);
            }
            return;
        }
        let mut sent: Vec<(Signal, usize)> = Vec::new();
        for (pid, stat) in &left {
            let sig = match self.signalled_groups.get(&stat.pgid) {
                None => Signal::SIGTERM,
                Some(group) => match group.missed_by(*pid, stat) {
                    Some(sig) => sig,
                    None => continue,
                },
            };
            reaper::signal_pid(*pid, sig);
            match sent.iter_mut().find(|(s, _)| *s == sig) {
                Some((_, n)) => *n += 1,
                None => sent.push((sig, 1)),
            }
        }
        for (sig, n) in sent {
            self.printer.system(&format!(
                "sending {} to {n} leftover process(es)",
                sig.as_str()
            ));
        }
    }

    /// Live descendants after a reaping pass. When `waitpid` reports no children there are
    /// none (an orphan is re-parented to procrun, the subreaper, before its parent can be
    /// reaped), so `/proc` is only read while something is left.
    fn leftovers(&mut self) -> Vec<(Pid, super::procfs::Stat)> {
        if self.reap() == Children::None {
            Vec::new()
        } else {
            reaper::descendants()
        }
    }

    /// Reaps what exited; says whether procrun has children left.
    fn reap(&mut self) -> Children {
        let now = Instant::now();
        let mut exits = Vec::new();
        let children = reaper::reap(|pid, status| exits.push((pid, status)));
        for (pid, status) in exits {
            let Some(status) = reaper::exit_status(&status) else {
                continue;
            };
            if matches!(status, Status::Code(126 | 127)) {
                self.report_exec_errors();
            }
            // Unknown pids are adopted orphans: reaped, nothing else.
            if let Some(i) = self.by_pid.remove(&pid.as_raw()) {
                let slot = &mut self.slots[i];
                slot.pid = None;
                slot.reaped_at = Some(now);
                slot.alive.set(false);
                self.draining.push(i);
                self.feed(Event::Exited { i, status });
            }
        }
        self.check_outputs(now);
        children
    }

    /// Says why children could not exec (they reported it before exiting).
    fn report_exec_errors(&mut self) {
        for (pid, e) in self.exec_errors.take() {
            if let Some(&i) = self.by_pid.get(&pid.as_raw()) {
                self.printer.system(&format!(
                    "{}: cannot exec {}: {}",
                    self.plan.instances[i].name,
                    spawn::SHELL,
                    crate::error::reason(&e)
                ));
            }
        }
    }

    /// Reports the output of exited processes as done once their pipe is at EOF or has been
    /// empty for `DRAIN` (a paused or busy reader is neither).
    fn check_outputs(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.draining.len() {
            let i = self.draining[k];
            let slot = &self.slots[i];
            let done = match (slot.reaped_at, &slot.reader) {
                (Some(reaped_at), Some(reader)) => {
                    reader.eof.get() || reader.idle_for(DRAIN, reaped_at, now)
                }
                _ => true,
            };
            if done {
                self.draining.swap_remove(k);
                self.feed(Event::OutputDone { i });
            } else {
                k += 1;
            }
        }
    }

    /// When to look at the output of exited processes again.
    fn output_deadline(&self, now: Instant) -> Option<Instant> {
        self.draining
            .iter()
            .filter_map(|&i| {
                let s = &self.slots[i];
                let reaped_at = s.reaped_at?;
                let reader = s.reader.as_ref()?;
                Some(
                    reader
                        .idle_deadline(DRAIN, reaped_at)
                        .unwrap_or(now + RECHECK),
                )
            })
            .min()
    }

    fn stall_limit(&self) -> Option<Duration> {
        if self.machine.escalated() {
            Some(STALL_ESCALATED)
        } else if self.machine.shutting_down() {
            Some(STALL)
        } else {
            // While the run goes on, a slow stdout just slows the processes down.
            None
        }
    }

    /// Gives up on a stdout that has made no progress for too long during shutdown.
    fn check_stall(&mut self, now: Instant) {
        let Some(limit) = self.stall_limit() else {
            return;
        };
        if self.gave_up.is_none() && self.printer.stalled_for(now) >= limit {
            self.gave_up = Some(if self.machine.escalated() {
                GaveUp::Escalated
            } else {
                GaveUp::Stalled
            });
            self.printer.discard();
        }
    }

    fn stall_deadline(&self, now: Instant) -> Option<Instant> {
        let limit = self.stall_limit()?;
        let stalled = self.printer.stalled_for(now);
        (self.gave_up.is_none() && !stalled.is_zero()).then(|| now + limit.saturating_sub(stalled))
    }

    fn on_signal(&mut self, signo: i32) {
        let Ok(sig) = Signal::try_from(signo) else {
            return;
        };
        match sig {
            Signal::SIGCHLD => {
                self.reap();
            }
            Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT => {
                self.feed(Event::Signal { signo });
                self.check_stall(Instant::now());
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

    /// Forwards a signal to the group of every process not yet reaped.
    fn forward(&self, sig: Signal) {
        for &pid in self.by_pid.keys() {
            reaper::signal_group(Pid::from_raw(pid), sig);
        }
    }

    fn on_ready(&mut self, msg: ReadyMsg) {
        let slot = &self.slots[msg.index];
        if slot.generation != msg.generation || slot.pid.is_none() {
            return;
        }
        if let Some(board) = &self.plan.board {
            board.set_ready(msg.index, msg.ok);
        }
        if msg.ok {
            self.feed(Event::Ready { i: msg.index });
        }
    }

    fn publish(&mut self) {
        let changed = self.machine.take_changed();
        if let Some(board) = &self.plan.board {
            for i in changed {
                board.publish(i, &self.machine.view(i));
            }
        }
    }
}

/// Checks instance `index`'s readiness on 127.0.0.1:`port` while it lives: every
/// `READY_FIRST` until it first passes, then every `READY_INTERVAL`.
async fn poll_ready(
    index: usize,
    generation: u32,
    port: u16,
    ready: Ready,
    alive: Rc<Cell<bool>>,
    tx: mpsc::UnboundedSender<ReadyMsg>,
) {
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port,
    };
    let target = match ready {
        Ready::Tcp => Target::Tcp { addr },
        Ready::Http(path) => Target::Http { addr, path },
    };
    let expect = Expect::default();
    let mut passed = false;
    while alive.get() {
        let ok = check(&target, &expect, READY_TIMEOUT).await.is_ok();
        if !alive.get() {
            return;
        }
        passed |= ok;
        let msg = ReadyMsg {
            index,
            generation,
            ok,
        };
        if tx.send(msg).is_err() {
            return;
        }
        let pause = if passed { READY_INTERVAL } else { READY_FIRST };
        tokio::time::sleep(pause).await;
    }
}
