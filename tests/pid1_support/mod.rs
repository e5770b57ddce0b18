//! Support for `tests/pid1.rs`: run procrun as PID 1 of a fresh PID namespace ("ns") or as an
//! ordinary child of the test process ("host", where procrun must be a subreaper), wait on
//! events with deadlines, and clean up by pid.
//!
//! # Why our own launcher (decided by experiment, see init.md §7)
//!
//! `unshare --pid --fork --mount-proc` cannot be used: util-linux's `unshare --fork` does not
//! report a signalled init faithfully (after SIGKILL of the init it printed "sigprocmask unblock
//! failed" and exited 1), and it hides the host-side pid of the init behind
//! `/proc/<pid>/task/<pid>/children` polling. So `Launch::spawn` forks the test process itself:
//!
//! * everything (argv, envp, paths, pipes) is prepared *before* `fork`, because the test harness
//!   is multi-threaded and the forked child may only make async-signal-safe calls;
//! * the child ("intermediate") closes every descriptor it does not need (other tests' pipes
//!   would otherwise be held open), optionally joins a cgroup, calls
//!   `unshare(CLONE_NEWPID | CLONE_NEWNS)` and forks the init;
//! * the init makes `/` recursively private, mounts a fresh `proc` on `/proc`, sets up stdio
//!   (pipes, or a pty as session leader with a controlling terminal like `docker run -it`),
//!   resets every signal disposition to default and the mask to empty (then applies the
//!   test's "odd" inherited state, T27), and execs procrun;
//! * the intermediate writes the init's host pid on a status pipe, waits for it and writes
//!   its raw wait status, so the test gets exit codes *and* signal deaths exactly;
//! * a close-on-exec pipe held only by the init tells the test the moment exec happened.
//!
//! Every process started by a test carries `PROCRUN_PID1_TAG=<unique>` in its environment, so
//! leftovers are found (and killed in `Drop`) by scanning `/proc/*/environ`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const PROCRUN: &str = env!("CARGO_BIN_EXE_procrun");
pub const TAG_VAR: &str = "PROCRUN_PID1_TAG";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique string for this test run.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Capability checks

/// True when this process may create PID and mount namespaces (tested once, in a forked child).
pub fn namespaces_allowed() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: the child only calls unshare and _exit, both async-signal-safe.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                let r = libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS);
                libc::_exit(if r == 0 { 0 } else { 1 });
            }
            if pid < 0 {
                return false;
            }
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
        }
    })
}

/// Prints a visible skip message and returns true when namespaces are not permitted.
pub fn skip_without_ns(test: &str) -> bool {
    if namespaces_allowed() {
        return false;
    }
    eprintln!("SKIPPED {test}: PID namespaces are not permitted here (needs root / CAP_SYS_ADMIN)");
    true
}

/// The real python3 (not a pyenv shim, which forks a bash first).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
            if Path::new(p).exists() {
                return p.to_string();
            }
        }
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".into())
    })
}

// ---------------------------------------------------------------------------------------------
// Scratch directories with scripts

/// The signal recorder / marker child: appends `ready`, `got <SIG>`, `clean exit` to a file.
/// argv: FILE [CLEANUP_SECONDS]. Never forks, so it keeps working under a pids limit.
pub const RECORDER: &str = r#"
import os, signal, sys, time
f = sys.argv[1]
cleanup = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
def log(s):
    fd = os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (s + "\n").encode())
    os.close(fd)
FATAL = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
def on(sig, frame):
    log("got " + signal.Signals(sig).name[3:])
    if sig in FATAL:
        time.sleep(cleanup)
        log("clean exit")
        os._exit(0)
for s in FATAL + (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT):
    signal.signal(s, on)
log("ready")
while True:
    time.sleep(1000)
"#;

pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("procrun-pid1-{}", unique(name)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rec.py"), RECORDER).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `python3 rec.py FILE CLEANUP` as a shell command.
    pub fn recorder(&self, file: &str, cleanup: f64) -> String {
        format!(
            "{} -I -S {} {} {cleanup}",
            python(),
            self.path("rec.py").display(),
            self.path(file).display()
        )
    }

    /// A Procfile entry that is the recorder itself (`exec`: dash does not exec the last
    /// command of `sh -c` by itself, and a forwarded USR1 would kill the wrapping shell).
    pub fn entry(&self, file: &str, cleanup: f64) -> String {
        format!("exec {}", self.recorder(file, cleanup))
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes a Procfile from `(name, command)` pairs; returns its path.
    pub fn procfile(&self, entries: &[(&str, String)]) -> PathBuf {
        let mut s = String::new();
        for (n, c) in entries {
            s += &format!("{n}: {c}\n");
        }
        self.write("Procfile", &s)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Number of lines of file `name` equal to `line`.
    pub fn count(&self, name: &str, line: &str) -> usize {
        self.read(name).lines().filter(|l| *l == line).count()
    }

    /// Waits until every file in `names` has a line `line`.
    pub fn wait_all(&self, names: &[&str], line: &str, timeout: Duration) -> bool {
        wait_until(timeout, || names.iter().all(|n| self.count(n, line) > 0))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub state: char,
    pub comm: String,
}

pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut f = stat[close + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
        comm,
    })
}

pub fn all_procs() -> Vec<ProcInfo> {
    let mut v = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(i) = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
                .and_then(proc_info)
            {
                v.push(i);
            }
        }
    }
    v
}

/// Every descendant of `root` (host pids), zombies included.
pub fn descendants(root: i32) -> Vec<ProcInfo> {
    let all = all_procs();
    let mut by_parent: HashMap<i32, Vec<ProcInfo>> = HashMap::new();
    for p in all {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(children) = by_parent.get(&p) {
            for c in children {
                stack.push(c.pid);
                out.push(c.clone());
            }
        }
    }
    out
}

pub fn zombies_under(root: i32) -> usize {
    descendants(root).iter().filter(|p| p.state == 'Z').count()
}

/// Live processes (anywhere on the host) whose environment carries `tag`.
pub fn tagged(tag: &str) -> Vec<i32> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut v = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                v.push(pid);
            }
        }
    }
    v
}

/// `SigBlk`/`SigIgn`/... of a `/proc/<pid>/status`-formatted text.
pub fn status_mask(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

pub fn sigbit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

// ---------------------------------------------------------------------------------------------
// Captured output

#[derive(Default)]
pub struct Captured {
    data: Mutex<(Vec<u8>, bool)>,
    cv: Condvar,
}

impl Captured {
    fn start(fd: OwnedFd) -> Arc<Captured> {
        Captured::start_with(fd, false)
    }

    fn start_with(fd: OwnedFd, head_one: bool) -> Arc<Captured> {
        let cap = Arc::new(Captured::default());
        let c = Arc::clone(&cap);
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = [0u8; 65536];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut d = c.data.lock().unwrap();
                        d.0.extend_from_slice(&buf[..n]);
                        c.cv.notify_all();
                        if head_one && d.0.contains(&b'\n') {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO on a pty master once the slave side is gone.
                    Err(_) => break,
                }
            }
            c.data.lock().unwrap().1 = true;
            c.cv.notify_all();
        });
        cap
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap().0).into_owned()
    }

    /// Waits until the text satisfies `pred` (true) or the deadline / EOF passes (false).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut d = self.data.lock().unwrap();
        loop {
            if pred(&String::from_utf8_lossy(&d.0)) {
                return true;
            }
            let now = Instant::now();
            if d.1 || now >= end {
                return false;
            }
            d = self.cv.wait_timeout(d, end - now).unwrap().0;
        }
    }

    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut d = self.data.lock().unwrap();
        while !d.1 {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            d = self.cv.wait_timeout(d, end - now).unwrap().0;
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Launching

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a new PID namespace.
    Ns,
    /// An ordinary child of the test process (procrun must be a subreaper).
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A pipe read by the test.
    Pipe,
    /// fd 1 is not open at all.
    Closed,
    /// A pipe whose reader takes one line and closes its end (`procrun start | head -1`).
    HeadOne,
}

pub struct Launch {
    pub mode: Mode,
    pub args: Vec<String>,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdout: Out,
    /// Run on a new pty as session leader with it as controlling terminal (ns only).
    pub pty: bool,
    /// Signals blocked / ignored in the state procrun inherits (T27).
    pub block: Vec<i32>,
    pub ignore: Vec<i32>,
    /// A `cgroup.procs` file the launcher joins before creating the namespace.
    pub cgroup_procs: Option<PathBuf>,
    /// With `Mode::Host`: still use the namespace launcher, but only for a private mount
    /// namespace (procrun is then an ordinary grandchild of the test, not PID 1).
    pub mount_ns_only: bool,
    /// Bind-mount this program over `/bin/sh` inside the private mount namespace.
    pub sh: Option<PathBuf>,
}

impl Launch {
    pub fn new(mode: Mode, dir: &Path, args: &[&str]) -> Launch {
        Launch {
            mode,
            args: args.iter().map(|s| s.to_string()).collect(),
            dir: dir.to_path_buf(),
            env: Vec::new(),
            stdout: Out::Pipe,
            pty: false,
            block: Vec::new(),
            ignore: Vec::new(),
            cgroup_procs: None,
            mount_ns_only: false,
            sh: None,
        }
    }

    pub fn spawn(self) -> Running {
        let tag = unique("tag");
        match self.mode {
            Mode::Host if self.mount_ns_only => self.spawn_ns(tag),
            Mode::Host => self.spawn_host(tag),
            Mode::Ns => self.spawn_ns(tag),
        }
    }

    fn spawn_host(self, tag: String) -> Running {
        assert!(!self.pty, "pty runs are ns only");
        let mut cmd = Command::new(PROCRUN);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env(TAG_VAR, &tag)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        match self.stdout {
            Out::Pipe | Out::HeadOne => cmd.stdout(Stdio::piped()),
            Out::Closed => cmd.stdout(Stdio::null()),
        };
        let head_one = self.stdout == Out::HeadOne;
        let closed = self.stdout == Out::Closed;
        let (block, ignore) = (self.block.clone(), self.ignore.clone());
        // SAFETY: sigaction/sigprocmask/close are async-signal-safe and nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                reset_signals(&block, &ignore);
                if closed {
                    libc::close(1);
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn procrun");
        let stdout = child
            .stdout
            .take()
            .map(|s| Captured::start_with(OwnedFd::from(s), head_one))
            .unwrap_or_else(|| {
                let c = Arc::new(Captured::default());
                c.data.lock().unwrap().1 = true;
                c
            });
        let stderr = Captured::start(OwnedFd::from(child.stderr.take().unwrap()));
        Running {
            mode: Mode::Host,
            pid: child.id() as i32,
            tag,
            start,
            stdout,
            stderr,
            pty_master: None,
            inner: Inner::Host(child),
            exit: None,
        }
    }

    fn spawn_ns(self, tag: String) -> Running {
        let cstr = |s: &str| CString::new(s).unwrap();
        let path = cstr(PROCRUN);
        let mut argv: Vec<CString> = vec![cstr("procrun")];
        argv.extend(self.args.iter().map(|a| cstr(a)));
        let mut envv: Vec<CString> = std::env::vars()
            .filter(|(k, _)| k != TAG_VAR)
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect();
        envv.push(cstr(&format!("{TAG_VAR}={tag}")));
        for (k, v) in &self.env {
            envv.push(cstr(&format!("{k}={v}")));
        }
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
        let dir = cstr(self.dir.to_str().unwrap());
        let root = cstr("/");
        let bin_sh = cstr("/bin/sh");
        let sh_src = self.sh.as_ref().map(|p| cstr(p.to_str().unwrap()));
        let sh_ptr = sh_src
            .as_ref()
            .map(|c| c.as_ptr())
            .unwrap_or(std::ptr::null());
        let flags = if self.mode == Mode::Ns {
            libc::CLONE_NEWPID | libc::CLONE_NEWNS
        } else {
            libc::CLONE_NEWNS
        };
        let procdir = cstr("/proc");
        let proc_fs = cstr("proc");
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let cgroup = self.cgroup_procs.as_ref().map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("open cgroup.procs")
        });

        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        let (exec_r, exec_w) = pipe();
        let (st_r, st_w) = pipe();
        let (master, slave) = if self.pty {
            let pty = nix::pty::openpty(None, None).expect("openpty");
            (Some(pty.master), Some(pty.slave))
        } else {
            (None, None)
        };
        let block = self.block.clone();
        let ignore = self.ignore.clone();
        let closed = self.stdout == Out::Closed;
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
                    if !sh_ptr.is_null()
                        && libc::mount(
                            sh_ptr,
                            bin_sh.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ) != 0
                    {
                        libc::_exit(125);
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
                let c = Captured::start(dup);
                let done = Arc::new(Captured::default());
                done.data.lock().unwrap().1 = true;
                drop(out_r);
                drop(err_r);
                (c, done, Some(m))
            }
            None => (
                Captured::start_with(out_r, self.stdout == Out::HeadOne),
                Captured::start(err_r),
                None,
            ),
        };
        Running {
            mode: self.mode,
            pid,
            tag,
            start,
            stdout,
            stderr,
            pty_master,
            inner: Inner::Ns {
                intermediate,
                status,
            },
            exit: None,
        }
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
unsafe fn reset_signals(block: &[i32], ignore: &[i32]) {
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

enum Inner {
    Host(Child),
    Ns {
        intermediate: i32,
        status: std::fs::File,
    },
}

/// A running procrun; `Drop` kills everything the test started.
pub struct Running {
    pub mode: Mode,
    /// procrun's host-side pid.
    pub pid: i32,
    pub tag: String,
    /// Just before fork (ns) / spawn (host).
    pub start: Instant,
    pub stdout: Arc<Captured>,
    pub stderr: Arc<Captured>,
    pub pty_master: Option<OwnedFd>,
    inner: Inner,
    exit: Option<Exit>,
}

impl Running {
    pub fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped (no pid reuse).
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Waits for procrun to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<Exit> {
        if self.exit.is_some() {
            return self.exit;
        }
        let end = Instant::now() + timeout;
        match &mut self.inner {
            Inner::Host(child) => loop {
                if let Ok(Some(st)) = child.try_wait() {
                    use std::os::unix::process::ExitStatusExt;
                    self.exit = Some(match st.code() {
                        Some(c) => Exit::Code(c),
                        None => Exit::Signal(st.signal().unwrap_or(0)),
                    });
                    break;
                }
                if Instant::now() >= end {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            },
            Inner::Ns {
                intermediate,
                status,
            } => {
                let mut pfd = libc::pollfd {
                    fd: status.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                loop {
                    let left = end.saturating_duration_since(Instant::now()).as_millis() as i32;
                    // SAFETY: one valid pollfd.
                    let r = unsafe { libc::poll(&mut pfd, 1, left) };
                    if r >= 0 || Instant::now() >= end {
                        break;
                    }
                }
                if pfd.revents != 0 {
                    let mut rec = [0u8; 8];
                    if status.read_exact(&mut rec).is_ok() {
                        let st = i32::from_ne_bytes(rec[4..].try_into().unwrap());
                        self.exit = Some(if libc::WIFEXITED(st) {
                            Exit::Code(libc::WEXITSTATUS(st))
                        } else {
                            Exit::Signal(libc::WTERMSIG(st))
                        });
                        let mut s = 0;
                        // SAFETY: reaping our own child, which exits right after writing.
                        unsafe { libc::waitpid(*intermediate, &mut s, 0) };
                        *intermediate = -1;
                    }
                }
            }
        }
        if self.exit.is_some() {
            // procrun is gone: let the readers take what is still in the pipes (bounded, in
            // case a leaked process still holds them).
            self.stdout.wait_eof(Duration::from_secs(2));
            self.stderr.wait_eof(Duration::from_secs(2));
        }
        self.exit
    }

    /// Waits for the exit, panicking with procrun's output after `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> Exit {
        match self.wait(timeout) {
            Some(e) => e,
            None => panic!(
                "procrun ({:?}) did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                self.mode,
                self.stdout.text(),
                self.stderr.text()
            ),
        }
    }

    pub fn out(&self) -> String {
        self.stdout.text()
    }

    pub fn err(&self) -> String {
        self.stderr.text()
    }

    pub fn wait_out(&self, timeout: Duration, needle: &str) -> bool {
        self.stdout.wait_for(timeout, |t| t.contains(needle))
    }

    /// Processes of this test still alive (host-wide), procrun excluded.
    pub fn leftovers(&self) -> Vec<i32> {
        tagged(&self.tag)
            .into_iter()
            .filter(|&p| p != self.pid || self.exit.is_some())
            .collect()
    }

    /// After the exit: nothing tagged survives (polled for 300 ms: the kernel tears a
    /// namespace down asynchronously), and the test process has no zombie children.
    pub fn assert_clean(&self) {
        assert!(self.exit.is_some(), "assert_clean before exit");
        let ok = wait_until(Duration::from_millis(300), || tagged(&self.tag).is_empty());
        let left: Vec<String> = tagged(&self.tag)
            .into_iter()
            .filter_map(proc_info)
            .map(|p| format!("{} {} ppid={} {}", p.pid, p.comm, p.ppid, p.state))
            .collect();
        assert!(
            ok,
            "processes left behind after procrun ({:?}) exited: {left:?}\nstdout:\n{}",
            self.mode,
            self.out()
        );
        let me = std::process::id() as i32;
        let z: Vec<ProcInfo> = all_procs()
            .into_iter()
            .filter(|p| p.ppid == me && p.state == 'Z' && p.pid == self.pid)
            .collect();
        assert!(z.is_empty(), "zombie left: {z:?}");
    }

    pub fn assert_no_panic(&self) {
        let err = self.err();
        assert!(
            !err.contains("panicked"),
            "procrun panicked ({:?}):\n{err}",
            self.mode
        );
    }

    /// Writes bytes to the pty master.
    pub fn type_keys(&self, bytes: &[u8]) {
        let m = self.pty_master.as_ref().expect("no pty");
        let mut f = std::fs::File::from(m.try_clone().unwrap());
        f.write_all(bytes).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SAFETY: our own child, not reaped yet.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.wait(Duration::from_secs(5));
        }
        // Kill whatever of ours survived (host mode leaks, or a failed assertion mid-test).
        for _ in 0..50 {
            let left = tagged(&self.tag);
            if left.is_empty() {
                break;
            }
            for p in left {
                // SAFETY: kill(2) on a pid that carries our unique tag.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Inner::Ns { intermediate, .. } = &self.inner
            && *intermediate > 0
        {
            let mut s = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(*intermediate, &mut s, 0) };
        }
        if let Inner::Host(child) = &mut self.inner {
            let _ = child.wait();
        }
    }
}

/// Raw fd helper for tests that need an `OwnedFd` from a `File`.
pub fn owned(f: std::fs::File) -> OwnedFd {
    // SAFETY: into_raw_fd transfers ownership.
    unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(f)) }
}
