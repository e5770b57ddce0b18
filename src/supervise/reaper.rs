//! The reaper: the only code in procrun that calls `waitpid`. It also sets up
//! subreaping and finds leftover descendants for the final sweep.

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;

/// Result of one reaping pass.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Children {
    /// Some children may still be running.
    Some,
    /// `ECHILD`: procrun has no children left.
    None,
}

/// Reaps every exited child (`waitpid(-1, WNOHANG)` until nothing is left) and hands each
/// status to `on_exit`, whoever the child was: managed processes and adopted orphans alike.
pub(crate) fn reap(mut on_exit: impl FnMut(Pid, WaitStatus)) -> Children {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Children::Some,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    on_exit(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return Children::None,
            Err(_) => return Children::Some,
        }
    }
}

/// True when procrun is the init of its PID namespace.
pub(crate) fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Makes procrun the reaper of orphaned descendants when it is not PID 1.
pub(crate) fn become_subreaper() {
    if is_pid1() {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        crate::warn(&format!(
            "cannot register as child subreaper ({e}); orphaned grandchildren will not be reaped by procrun"
        ));
    }
}

/// Every live descendant of procrun with its stat, from `/proc`.
pub(crate) fn descendants() -> Vec<(Pid, super::procfs::Stat)> {
    let me = std::process::id() as i32;
    let mut children: HashMap<i32, Vec<(i32, super::procfs::Stat)>> = HashMap::new();
    for (pid, stat) in super::procfs::all() {
        children.entry(stat.ppid).or_default().push((pid, stat));
    }
    let mut out = Vec::new();
    let mut stack = vec![me];
    while let Some(p) = stack.pop() {
        for &(c, stat) in children.get(&p).map(|v| v.as_slice()).unwrap_or(&[]) {
            if c == me {
                continue;
            }
            stack.push(c);
            if stat.is_alive() {
                out.push((Pid::from_raw(c), stat));
            }
        }
    }
    out
}

/// Sends `sig` to the process group led by `leader`, a child procrun has not reaped yet.
///
/// Right after `fork` the child may not have called `setsid` yet, so its group does not exist
/// and `killpg` fails with ESRCH: then the signal goes to the child itself, where it stays
/// pending (the child still has every signal blocked) until the child restores its mask, just
/// before exec. But the child may get through `setsid`, its exec and a fork of its own between
/// the failed `killpg` and that `kill`: so the group is signalled once more afterwards. Either
/// the child is still before `setsid` then (it has forked nothing, and the pending signal acts
/// before its exec), or the group exists and the whole of it gets the signal. A signal is never
/// lost in that window, and never misses part of the group.
pub(crate) fn signal_group(leader: Pid, sig: Signal) {
    if nix::sys::signal::killpg(leader, sig) == Err(Errno::ESRCH) {
        let _ = kill(leader, sig);
        let _ = nix::sys::signal::killpg(leader, sig);
    }
}

/// How a reaped process ended (`None` for a wait status that is not an end).
pub(crate) fn exit_status(status: &WaitStatus) -> Option<super::machine::Status> {
    use super::machine::Status;
    match *status {
        WaitStatus::Exited(_, code) => Some(Status::Code(code)),
        WaitStatus::Signaled(_, sig, _) => Some(Status::Signal(sig as i32)),
        _ => None,
    }
}

/// The stop signal a process group got, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupSignal {
    pub(crate) sig: Signal,
    /// Taken just before the signal; `None` if the clock could not be read.
    pub(crate) mark: Option<super::procfs::ForkMark>,
}

impl GroupSignal {
    /// Sends `sig` to the group led by `leader` (see [`signal_group`]) and says when.
    pub(crate) fn send(leader: Pid, sig: Signal) -> GroupSignal {
        let mark = super::procfs::ForkMark::now();
        signal_group(leader, sig);
        GroupSignal { sig, mark }
    }

    /// What the final sweep sends to `pid`, a leftover member of this group: nothing if it got
    /// the group's signal, that signal if it may have missed it.
    ///
    /// A process that got its stop signal is not signalled again (one shutting down
    /// gracefully may take a second signal as "hurry"). But one forked after the signal
    /// never got it: a shell that had signals blocked around its fork (dash does, for the
    /// fork and exec of each command) takes the group's signal alone, forks, then dies of it,
    /// and its new child is left running, in the group. After a SIGKILL nothing is missed:
    /// a fatal signal cuts short a fork in progress.
    pub(crate) fn missed_by(&self, pid: Pid, stat: &super::procfs::Stat) -> Option<Signal> {
        if self.sig == Signal::SIGKILL {
            return None;
        }
        match self.mark {
            Some(mark) if !mark.forked_after(pid.as_raw(), stat) => None,
            _ => Some(self.sig),
        }
    }
}

/// Sends `sig` to one process, ignoring "no such process".
pub(crate) fn signal_pid(pid: Pid, sig: Signal) {
    let _ = kill(pid, sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::procfs::{ForkMark, Stat};

    #[test]
    fn a_leftover_gets_its_groups_signal_again_only_if_it_missed_it() {
        let stat = |start| Stat {
            state: 'S',
            ppid: 1,
            pgid: 7,
            start,
        };
        let mark = ForkMark::now();
        assert!(mark.is_some());
        let group = |sig, mark| GroupSignal { sig, mark };
        let (before, after) = (stat(0), stat(u64::MAX));
        let pid = Pid::from_raw(7);
        type Case = (GroupSignal, Stat, Option<Signal>);
        let cases: &[Case] = &[
            (group(Signal::SIGTERM, mark), before, None),
            (group(Signal::SIGTERM, mark), after, Some(Signal::SIGTERM)),
            (group(Signal::SIGQUIT, mark), after, Some(Signal::SIGQUIT)),
            // Without a clock, a member may have missed it.
            (group(Signal::SIGTERM, None), before, Some(Signal::SIGTERM)),
            // Nothing joins a group after a SIGKILL.
            (group(Signal::SIGKILL, mark), after, None),
            (group(Signal::SIGKILL, None), before, None),
        ];
        for (g, s, want) in cases {
            assert_eq!(g.missed_by(pid, s), *want, "{g:?} {s:?}");
        }
    }
}
