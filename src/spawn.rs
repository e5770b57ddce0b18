//! Starting children: `/bin/sh -c COMMAND` in its own session and process group, stdin `/dev/null`,
//! stdout and stderr on one pipe, the inherited signal mask restored. All `pre_exec` code
//! (the only `unsafe` of spawning) lives here.
//!
//! `std::process::Command` is used only to fork and exec: the `Child` is dropped at once and
//! never waited for, because the reaper owns every `waitpid` (a second waiter steals statuses).

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// A started child.
pub struct Spawned {
    pub pid: Pid,
    /// The read end of its output pipe, non-blocking (None when output is inherited).
    pub output: Option<OwnedFd>,
}

/// How the child's stdio is wired.
pub enum Stdio3 {
    /// stdin `/dev/null`, stdout+stderr on a new pipe (Procfile processes).
    Piped,
    /// Inherit procrun's stdin/stdout/stderr and take the terminal's foreground (`run`).
    Inherit,
}

/// Starts `argv` with the environment overlay applied on top of procrun's environment.
pub fn spawn(
    argv: &[&str],
    overlay: &[(String, String)],
    mask: &SigSet,
    stdio: Stdio3,
) -> std::io::Result<Spawned> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .envs(overlay.iter().map(|(k, v)| (k, v)));
    let mut output = None;
    let keep_session = matches!(stdio, Stdio3::Inherit);
    let foreground = match stdio {
        Stdio3::Piped => {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(w.try_clone()?))
                .stderr(Stdio::from(w));
            output = Some(r);
            false
        }
        Stdio3::Inherit => nix::unistd::isatty(std::io::stdin()).unwrap_or(false),
    };
    let mask = *mask;
    // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: setsid, setpgid, tcsetpgrp and sigprocmask are, and nothing here allocates or locks.
    // SIGTTOU is still blocked at the tcsetpgrp call (procrun blocks it), so a background
    // group may take the terminal; the mask procrun inherited is restored last, because
    // std's Command would otherwise pass procrun's fully blocked mask to the child.
    unsafe {
        cmd.pre_exec(move || {
            // Procfile processes lead their own session, as with honcho (`setsid`); `run`'s
            // command keeps procrun's session so that it can own the terminal.
            let ok = if foreground || keep_session {
                libc::setpgid(0, 0) == 0
            } else {
                libc::setsid() != -1
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
            if foreground {
                libc::tcsetpgrp(0, libc::getpid());
            }
            if libc::sigprocmask(libc::SIG_SETMASK, mask.as_ref(), std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    // Dropping `cmd` closes our copies of the pipe's write end, so EOF arrives when the child
    // and its descendants close theirs. Dropping `child` does not wait.
    drop(cmd);
    drop(child);
    Ok(Spawned { pid, output })
}

/// The argv for a Procfile command.
pub fn shell(command: &str) -> [&str; 3] {
    ["/bin/sh", "-c", command]
}
