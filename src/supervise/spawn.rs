//! Starting children: `/bin/sh -c COMMAND` in its own session and process group, stdin
//! `/dev/null`, stdout and stderr on one pipe, the inherited signal mask restored.
//!
//! procrun forks and execs by itself rather than through `std::process::Command`, for two
//! reasons: std's spawn blocks the parent until the child has exec'd (which serialises starting
//! many processes and delays reading the first ones' output), and std would need a `pre_exec`
//! closure anyway to restore the signal mask. Everything the child needs (argv, envp, file
//! descriptors) is prepared before `fork`, so the child only makes async-signal-safe system
//! calls. Nothing here waits: the reaper owns every `waitpid`. An exec failure ends the child
//! with 127 (not found) or 126 (not executable), as a shell would.

use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// A started child.
pub(crate) struct Spawned {
    pub(crate) pid: Pid,
    /// The read end of its output pipe, non-blocking (None when output is inherited).
    pub(crate) output: Option<OwnedFd>,
}

/// How the child's stdio is wired.
pub(crate) enum Stdio3 {
    /// stdin `/dev/null`, stdout+stderr on a new pipe, a new session (Procfile processes).
    Piped,
    /// Inherit procrun's stdin/stdout/stderr; a new process group in procrun's session that
    /// takes the terminal's foreground when stdin is a terminal (`run`).
    Inherit,
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| std::io::Error::other("argument or variable contains a NUL byte"))
}

/// procrun's own environment as `KEY=VALUE` C strings, shared by every spawn.
pub(crate) struct BaseEnv {
    vars: Vec<(Vec<u8>, CString)>,
}

impl BaseEnv {
    /// procrun's environment (read once at start-up; procrun never changes it).
    pub(crate) fn new(os: &crate::config::OsEnv) -> BaseEnv {
        let vars = os
            .vars()
            .iter()
            .filter_map(|(k, v)| {
                let key = k.as_bytes().to_vec();
                let mut kv = key.clone();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Some((key, CString::new(kv).ok()?))
            })
            .collect();
        BaseEnv { vars }
    }
}

/// Starts `argv` with the environment `base` plus `overlay` (overlay entries win).
pub(crate) fn spawn(
    argv: &[&str],
    base: &BaseEnv,
    overlay: &[(String, String)],
    mask: &SigSet,
    stdio: Stdio3,
) -> std::io::Result<Spawned> {
    let path = cstring(OsStr::new(argv[0]).as_bytes())?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let added: Vec<CString> = overlay
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<Result<_, _>>()?;
    let overridden = |key: &[u8]| overlay.iter().any(|(k, _)| k.as_bytes() == key);
    let mut env_ptrs: Vec<*const libc::c_char> =
        Vec::with_capacity(base.vars.len() + added.len() + 1);
    env_ptrs.extend(
        base.vars
            .iter()
            .filter(|(k, _)| !overridden(k))
            .map(|(_, kv)| kv.as_ptr()),
    );
    env_ptrs.extend(added.iter().map(|kv| kv.as_ptr()));
    env_ptrs.push(std::ptr::null());

    let piped = matches!(stdio, Stdio3::Piped);
    let (devnull, pipe) = if piped {
        let devnull = open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        (Some(devnull), Some((r, w)))
    } else {
        (None, None)
    };
    let foreground = !piped && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let stdin_fd = devnull.as_ref().map(|f| f.as_raw_fd());
    let out_fd = pipe.as_ref().map(|(_, w)| w.as_raw_fd());
    let mask = *mask;
    let ignore_pipe = super::signals::PIPE_IGNORED.load(std::sync::atomic::Ordering::Relaxed);

    // SAFETY: between `fork` and `execve` the child (a copy of one thread of a process that
    // has another thread) may only make async-signal-safe calls. It calls dup2, setsid,
    // setpgid, tcsetpgrp, sigaction, sigprocmask, execve and _exit, all async-signal-safe, on
    // data prepared above (no allocation, no locks). SIGTTOU is still blocked at tcsetpgrp
    // (procrun blocks it), so a background group may take the terminal. The mask procrun
    // inherited is restored last.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: this is the child; see the comment above `fork`.
        unsafe {
            if let (Some(stdin_fd), Some(out_fd)) = (stdin_fd, out_fd) {
                // dup2 clears close-on-exec on the new descriptors.
                if libc::dup2(stdin_fd, 0) < 0
                    || libc::dup2(out_fd, 1) < 0
                    || libc::dup2(out_fd, 2) < 0
                {
                    libc::_exit(127);
                }
            }
            let session = if piped {
                libc::setsid() != -1
            } else {
                libc::setpgid(0, 0) == 0
            };
            if !session {
                libc::_exit(127);
            }
            if foreground {
                libc::tcsetpgrp(0, libc::getpid());
            }
            // Rust ignores SIGPIPE in procrun; children get back what procrun inherited.
            if !ignore_pipe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, mask.as_ref(), std::ptr::null_mut());
            libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::_exit(if errno == libc::EACCES || errno == libc::ENOEXEC {
                126
            } else {
                127
            });
        }
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Our copies of the pipe's write end and /dev/null close here, so EOF arrives when the
    // child and its descendants close theirs.
    drop(devnull);
    Ok(Spawned {
        pid: Pid::from_raw(pid),
        output: pipe.map(|(r, _w)| r),
    })
}

/// The argv for a Procfile command.
pub(crate) fn shell(command: &str) -> [&str; 3] {
    ["/bin/sh", "-c", command]
}
