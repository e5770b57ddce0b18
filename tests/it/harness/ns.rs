//! The PID-namespace launcher: runs procrun as PID 1 of a fresh PID namespace, as
//! `docker run` does, or as an ordinary process in a private mount namespace.
//!
//! # Why our own launcher
//!
//! util-linux's `unshare --pid --fork --mount-proc` was tried and cannot be used: its `--fork`
//! parent does not report a signalled init faithfully (after SIGKILL of the init it printed
//! "sigprocmask unblock failed" and exited 1), and it hides the host-side pid of the init, which
//! the tests need to signal procrun and to read its `/proc` entries. So [`spawn`] forks the test
//! process itself:
//!
//! * everything (argv, envp, paths, pipes) is prepared *before* `fork`, because the test harness
//!   is multi-threaded and the forked child may only make async-signal-safe calls;
//! * the child ("intermediate") closes every descriptor it does not need (other tests' pipes
//!   would otherwise be held open), optionally joins a cgroup, calls
//!   `unshare(CLONE_NEWPID | CLONE_NEWNS)` and forks the init;
//! * the init makes `/` recursively private, mounts a fresh `proc` on `/proc`, sets up stdio
//!   (pipes, or a pty as session leader with a controlling terminal like `docker run -it`),
//!   resets every signal disposition to default and the mask to empty (then applies the
//!   test's "odd" inherited state), and execs procrun;
//! * the intermediate writes the init's host pid on a status pipe, waits for it and writes
//!   its raw wait status, so the test gets exit codes *and* signal deaths exactly;
//! * a close-on-exec pipe held only by the init tells the test the moment exec happened.

use super::{Captured, Inner, Launch, Mode, Out, Running};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

/// Starts `l` through the namespace launcher; returns once procrun has been exec'd.
pub(super) fn spawn(l: Launch, tag: String) -> Running {
    assert!(
        !matches!(l.stdout, Out::Raw | Out::Pty),
        "Out::Raw and Out::Pty are host only"
    );
    let cstr = |s: &str| CString::new(s).unwrap();
    let path = CString::new(l.program.as_os_str().as_bytes()).unwrap();
    let mut argv: Vec<CString> = vec![path.clone()];
    argv.extend(l.args.iter().map(|a| CString::new(a.as_bytes()).unwrap()));
    let envv: Vec<CString> = l
        .environment(&tag)
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect();
    let argp: Vec<*const libc::c_char> = argv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envv
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let dir = cstr(l.dir.to_str().unwrap());
    let root = cstr("/");
    let binds: Vec<(CString, CString)> = l
        .binds
        .iter()
        .map(|(s, t)| (cstr(s.to_str().unwrap()), cstr(t.to_str().unwrap())))
        .collect();
    let bind_ptrs: Vec<(*const libc::c_char, *const libc::c_char)> = binds
        .iter()
        .map(|(s, t)| (s.as_ptr(), t.as_ptr()))
        .collect();
    let flags = if l.mode == Mode::Ns {
        libc::CLONE_NEWPID | libc::CLONE_NEWNS
    } else {
        libc::CLONE_NEWNS
    };
    let procdir = cstr("/proc");
    let proc_fs = cstr("proc");
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let cgroup = l.cgroup_procs.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .expect("open cgroup.procs")
    });

    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let (exec_r, exec_w) = pipe();
    let (st_r, st_w) = pipe();
    let (master, slave) = if l.tty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        (Some(pty.master), Some(pty.slave))
    } else {
        (None, None)
    };
    let block = l.block.clone();
    let ignore = l.ignore.clone();
    let closed = l.stdout == Out::Closed;
    let raw = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let (slave_fd, out_w_fd, err_w_fd, exec_w_fd, st_w_fd, null_fd) = (
        raw(&slave),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        exec_w.as_raw_fd(),
        st_w.as_raw_fd(),
        devnull.as_raw_fd(),
    );
    let cg_fd = cgroup.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);

    let start = Instant::now();
    // SAFETY: between fork and exec/_exit the children only make async-signal-safe system
    // calls on data prepared above; nothing allocates or takes a lock.
    let intermediate = unsafe { libc::fork() };
    assert!(intermediate >= 0, "fork failed");
    if intermediate == 0 {
        unsafe {
            close_all_except(&[
                slave_fd, out_w_fd, err_w_fd, exec_w_fd, st_w_fd, null_fd, cg_fd,
            ]);
            if cg_fd >= 0 {
                libc::write(cg_fd, b"0".as_ptr().cast(), 1);
                libc::close(cg_fd);
            }
            if libc::unshare(flags) != 0 {
                libc::_exit(120);
            }
            let init = libc::fork();
            if init == 0 {
                libc::close(st_w_fd);
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    libc::_exit(121);
                }
                if flags & libc::CLONE_NEWPID != 0
                    && libc::mount(
                        proc_fs.as_ptr(),
                        procdir.as_ptr(),
                        proc_fs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ) != 0
                {
                    libc::_exit(122);
                }
                for &(source, target) in &bind_ptrs {
                    if libc::mount(
                        source,
                        target,
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    {
                        libc::_exit(125);
                    }
                }
                if slave_fd >= 0 {
                    libc::setsid();
                    libc::ioctl(slave_fd, libc::TIOCSCTTY, 0);
                    libc::dup2(slave_fd, 0);
                    libc::dup2(slave_fd, 1);
                    libc::dup2(slave_fd, 2);
                    libc::close(slave_fd);
                } else {
                    libc::dup2(null_fd, 0);
                    libc::dup2(out_w_fd, 1);
                    libc::dup2(err_w_fd, 2);
                }
                if closed {
                    libc::close(1);
                }
                for fd in [out_w_fd, err_w_fd, null_fd] {
                    if fd > 2 {
                        libc::close(fd);
                    }
                }
                reset_signals(&block, &ignore);
                if libc::chdir(dir.as_ptr()) != 0 {
                    libc::_exit(123);
                }
                libc::execve(path.as_ptr(), argp.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            // The intermediate: report the init's host pid, then its raw wait status.
            for fd in [slave_fd, out_w_fd, err_w_fd, exec_w_fd, null_fd] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(s, libc::SIG_IGN);
            }
            let rec = [init, 0];
            libc::write(st_w_fd, rec.as_ptr().cast(), 8);
            if init < 0 {
                libc::_exit(124);
            }
            let mut st = 0;
            while libc::waitpid(init, &mut st, 0) < 0 {}
            let rec = [1, st];
            libc::write(st_w_fd, rec.as_ptr().cast(), 8);
            libc::_exit(0);
        }
    }
    drop((out_w, err_w, exec_w, st_w, slave, devnull, cgroup));
    let mut status = std::fs::File::from(st_r);
    let mut rec = [0u8; 8];
    if status.read_exact(&mut rec).is_err() {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(intermediate, &mut st, 0) };
        panic!(
            "namespace launcher failed: wait status {st:#x} (exit {})",
            libc::WEXITSTATUS(st)
        );
    }
    let pid = i32::from_ne_bytes(rec[..4].try_into().unwrap());
    assert!(pid > 0, "launcher could not fork the init");
    // EOF on the close-on-exec pipe: procrun has been exec'd (or the init died).
    let mut e = std::fs::File::from(exec_r);
    let _ = e.read_to_end(&mut Vec::new());
    let (stdout, stderr, pty_master) = match master {
        Some(m) => {
            let dup = m.try_clone().unwrap();
            let c = Captured::start(dup, false);
            let done = Captured::closed();
            drop(out_r);
            drop(err_r);
            (c, done, Some(m))
        }
        None => (
            Captured::start(out_r, l.stdout == Out::HeadOne),
            Captured::start(err_r, false),
            None,
        ),
    };
    Running {
        mode: l.mode,
        pid,
        tag,
        start,
        stdout,
        stderr,
        raw_stdout: None,
        pty_master,
        inner: Inner::Ns {
            intermediate,
            status,
        },
        exit: None,
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// Async-signal-safe: closes every descriptor above 2 not in `keep`.
unsafe fn close_all_except(keep: &[RawFd]) {
    for fd in 3..4096 {
        if !keep.contains(&fd) {
            // SAFETY: closing descriptors in a freshly forked child.
            unsafe { libc::close(fd) };
        }
    }
}

/// Async-signal-safe: every disposition to default, mask empty, then block/ignore the given.
pub(super) unsafe fn reset_signals(block: &[i32], ignore: &[i32]) {
    // SAFETY: plain signal-state system calls with valid arguments.
    unsafe {
        // Raw rt_sigaction: glibc refuses 32 and 33, which a harness may have left ignored.
        let dfl = [0usize; 4]; // handler SIG_DFL, flags, restorer, mask (kernel layout)
        for s in 1..=64 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    s,
                    dfl.as_ptr(),
                    std::ptr::null::<usize>(),
                    8usize,
                );
            }
        }
        for &s in ignore {
            libc::signal(s, libc::SIG_IGN);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in block {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}
