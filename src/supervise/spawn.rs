//! Starting children: `/bin/sh -c COMMAND` (or, for `run`, a program by itself) in its own
//! session and process group, stdin `/dev/null`, stdout and stderr on one pipe, the inherited
//! signal mask restored, and SIGTERM as its parent-death signal so that it never outlives
//! procrun (even one killed with SIGKILL).
//!
//! procrun forks and execs by itself rather than through `std::process::Command`, for two
//! reasons: std's spawn blocks the parent until the child has exec'd (which serialises starting
//! many processes and delays reading the first ones' output), and std would need a `pre_exec`
//! closure anyway to restore the signal mask. Everything the child needs (argv, envp, file
//! descriptors) is prepared before `fork`, so the child only makes async-signal-safe system
//! calls. Nothing here waits: the reaper owns every `waitpid`. An exec failure ends the child
//! with 127 (not found) or 126 (not executable), as a shell would, after writing its pid and
//! errno to the run's [`ExecErrors`] pipe, so procrun can say why (`cannot exec /bin/sh: No such
//! file or directory`) when it reaps it. One pipe serves every child, so starting thousands of
//! processes costs one descriptor each (their output pipe), not two.

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

/// Where children that fail to exec leave `(pid, errno)`: a pipe whose write end every child
/// inherits until its exec (close-on-exec) and whose read end procrun reads when it reaps a
/// child that exited with 126 or 127. Both ends are non-blocking: a child never waits to
/// report, and procrun never waits to read.
pub(crate) struct ExecErrors {
    read: OwnedFd,
    write: OwnedFd,
}

/// One record: pid and errno, native order (8 bytes, written atomically).
const RECORD: usize = 8;

impl ExecErrors {
    pub(crate) fn new() -> std::io::Result<ExecErrors> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(ExecErrors { read, write })
    }

    /// Every failure reported so far, as `(pid, error)`.
    pub(crate) fn take(&self) -> Vec<(Pid, std::io::Error)> {
        let mut out = Vec::new();
        let mut buf = [0u8; RECORD * 64];
        loop {
            let n = match nix::unistd::read(&self.read, &mut buf) {
                Ok(n) if n > 0 => n,
                Err(nix::errno::Errno::EINTR) => continue,
                _ => return out,
            };
            for record in buf[..n].chunks_exact(RECORD) {
                let (pid, errno) = record.split_at(4);
                let int = |b: &[u8]| i32::from_ne_bytes(b.try_into().unwrap_or_default());
                out.push((
                    Pid::from_raw(int(pid)),
                    std::io::Error::from_raw_os_error(int(errno)),
                ));
            }
        }
    }
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

/// Starts `program` with `argv` and the environment `base` plus `overlay` (overlay entries
/// win).
pub(crate) fn spawn(
    program: &str,
    argv: &[&str],
    base: &BaseEnv,
    overlay: &[(String, String)],
    mask: &SigSet,
    stdio: Stdio3,
    errors: &ExecErrors,
) -> std::io::Result<Spawned> {
    let path = cstring(OsStr::new(program).as_bytes())?;
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
    let status_fd = errors.write.as_raw_fd();
    let parent = nix::unistd::getpid().as_raw();
    let foreground = !piped && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let stdin_fd = devnull.as_ref().map(|f| f.as_raw_fd());
    let out_fd = pipe.as_ref().map(|(_, w)| w.as_raw_fd());
    let mask = *mask;
    let ignore_pipe = super::signals::PIPE_IGNORED.load(std::sync::atomic::Ordering::Relaxed);

    // SAFETY: between `fork` and `execve` the child (a copy of one thread of a process that
    // has another thread) may only make async-signal-safe calls. It calls dup2, setsid,
    // setpgid, tcsetpgrp, prctl, getppid, signal, sigprocmask, execve, write and _exit, all
    // async-signal-safe, on data prepared above (no allocation, no locks). SIGTTOU is still
    // blocked at tcsetpgrp (procrun blocks it), so a background group may take the terminal.
    // The mask procrun inherited is restored last.
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
            // Never outlive procrun; and if procrun is already gone, do not start at all.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            // Rust ignores SIGPIPE in procrun; children get back what procrun inherited.
            if !ignore_pipe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, mask.as_ref(), std::ptr::null_mut());
            libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            let me = libc::getpid();
            let mut record = [0u8; RECORD];
            record[..4].copy_from_slice(&me.to_ne_bytes());
            record[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(status_fd, record.as_ptr().cast(), RECORD);
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

/// The shell that runs Procfile commands.
pub(crate) const SHELL: &str = "/bin/sh";

/// The argv for a Procfile command.
pub(crate) fn shell(command: &str) -> [&str; 3] {
    [SHELL, "-c", command]
}

/// Finds `name` as `execvp` would, in the directories of `path` (the child's `PATH`); a name
/// with a `/` is used as it is. `None`: no executable file of that name.
pub(crate) fn find_program(name: &str, path: &str) -> Option<String> {
    use nix::unistd::{AccessFlags, access};
    if name.contains('/') {
        return Some(name.to_string());
    }
    if name.is_empty() {
        return None;
    }
    path.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && access(candidate.as_str(), AccessFlags::X_OK).is_ok())
            .then_some(candidate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_like_execvp() {
        assert_eq!(
            find_program("sh", "/nonexistent:/bin").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(
            find_program("sh", "/bin/:/usr/bin").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(find_program("./x", "").as_deref(), Some("./x"));
        assert_eq!(find_program("no-such-program-here", "/bin:/usr/bin"), None);
        assert_eq!(find_program("", "/bin"), None);
        // A directory is not a program.
        assert_eq!(find_program("tmp", "/"), None);
    }

    #[test]
    fn exec_errors_are_read_back_by_pid() {
        let errors = ExecErrors::new().unwrap();
        assert!(errors.take().is_empty());
        for (pid, errno) in [(42, libc::ENOENT), (43, libc::E2BIG)] {
            let mut record = [0u8; RECORD];
            record[..4].copy_from_slice(&i32::to_ne_bytes(pid));
            record[4..].copy_from_slice(&errno.to_ne_bytes());
            nix::unistd::write(&errors.write, &record).unwrap();
        }
        let got: Vec<(i32, Option<i32>)> = errors
            .take()
            .into_iter()
            .map(|(p, e)| (p.as_raw(), e.raw_os_error()))
            .collect();
        assert_eq!(got, vec![(42, Some(libc::ENOENT)), (43, Some(libc::E2BIG))]);
    }
}
