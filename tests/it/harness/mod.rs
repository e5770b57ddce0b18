//! The one harness of the integration tests: start the real binary with a fluent builder
//! ([`procrun`] → [`Launch`] → [`Running`]), read its output as it comes, wait for events with
//! deadlines, and kill everything a test started.
//!
//! Rules every test follows:
//!
//! * **Events, not sleeps.** A test waits for something the child shows it has done (a line it
//!   prints *after* setting its trap, a marker file, a port, a `/proc` state), never for a fixed
//!   time. Every wait has a deadline and panics with procrun's output when it passes.
//! * **Nothing survives a test.** Every process a test starts carries `PROCRUN_TEST_TAG=<unique>`
//!   in its environment (procrun passes it on to its children); dropping the [`Running`] guard
//!   SIGKILLs procrun and every process that still carries the tag, however it was started.
//! * **A clean start.** procrun gets a small fixed environment (`PATH`, `LANG`, `TZ`, the tag),
//!   stdin `/dev/null`, every signal disposition at its default and an empty signal mask, so
//!   what the test runner inherited does not leak into the results.
//! * **Visible skips.** Tests that need PID namespaces (root) call [`skip_without_ns`]: a skip is
//!   written to the terminal, and it fails the test when `PROCRUN_REQUIRE_PID1=1` (CI).

mod dns;
mod ns;
pub mod procfs;

pub use dns::SilentDns;

pub use procfs::*;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_procrun");
/// The environment variable that marks every process a test started.
pub const TAG_VAR: &str = "PROCRUN_TEST_TAG";
/// Default deadline for a wait or an exit: generous for a loaded 2-core machine; a test that
/// needs a tighter bound asserts it separately.
pub const T: Duration = Duration::from_secs(20);

/// procrun counts the same shutdown signal repeated within 100 ms once (the same signal sent to
/// a process and to its group); a test that means a *second* signal sends it this long after
/// the first. This wait is the behaviour under test, not a synchronisation.
pub const AFTER_SAME_SIGNAL: Duration = Duration::from_millis(150);

/// Sleeps until `since + AFTER_SAME_SIGNAL` (see [`AFTER_SAME_SIGNAL`]).
pub fn past_same_signal_window(since: Instant) {
    let until = since + AFTER_SAME_SIGNAL;
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A string unique to this test process.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 5 ms until it holds (true) or `timeout` passes (false).
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
// Capabilities and skips

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

/// Writes a line where a person running the tests sees it: the controlling terminal when
/// there is one (the test runner captures stdout and stderr of passing tests), and stderr.
pub fn tell(line: &str) {
    if let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty") {
        let _ = writeln!(tty, "{line}");
    }
    eprintln!("{line}");
}

/// True (after a visible message) when PID namespaces are not permitted and the test must
/// skip; panics instead when `PROCRUN_REQUIRE_PID1=1`, so that CI cannot pass by skipping.
pub fn skip_without_ns(test: &str) -> bool {
    if namespaces_allowed() {
        return false;
    }
    let why = "PID namespaces are not permitted here (needs root / CAP_SYS_ADMIN)";
    if std::env::var("PROCRUN_REQUIRE_PID1").as_deref() == Ok("1") {
        panic!("{test}: {why}, and PROCRUN_REQUIRE_PID1=1 forbids skipping");
    }
    tell(&format!("SKIPPED {test}: {why}"));
    true
}

/// Gives the calling thread (and what it forks or starts later) the lowest real-time priority,
/// SCHED_RR 1, when permitted (root); otherwise nothing changes. A real-time thread runs as soon
/// as it wakes whatever the CPU load from ordinary processes, which nice cannot promise: with
/// autogroups each session (every procrun child leads one) competes at the same weight.
pub fn set_realtime() {
    // SAFETY: sched_param is a plain C struct (more fields on musl) for which all-zero bytes
    // are valid; sched_setscheduler on the calling thread is async-signal-safe.
    unsafe {
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = 1;
        libc::sched_setscheduler(0, libc::SCHED_RR, &param);
    }
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

/// Generates a test `ns::<name>` (procrun as PID 1 of a PID namespace; skips visibly without
/// root) and a test `host::<name>` (an ordinary child of the test) from each `fn <name>(Mode)`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod ns {
            $(
                #[test]
                fn $name() {
                    if $crate::harness::skip_without_ns(concat!(module_path!(), "::", stringify!($name))) {
                        return;
                    }
                    super::$name($crate::harness::Mode::Ns);
                }
            )*
        }
        mod host {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::harness::Mode::Host);
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Scratch directories

/// The signal recorder: appends `ready`, `got <SIG>`, `clean exit` to a file. argv: FILE
/// [CLEANUP_SECONDS]. Never forks, so it keeps working under a pids limit.
pub const RECORDER: &str = r#"
import os, signal, sys, time
f = sys.argv[1]
cleanup = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
FATAL = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
HANDLED = FATAL + (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)
def log(s):
    fd = os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (s + "\n").encode())
    os.close(fd)
# Signals are taken one at a time, lowest number first, and each is logged before the next:
# handlers could run one inside another and exit before an earlier signal was written down.
signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
log("ready")
while True:
    sig = signal.sigwaitinfo(HANDLED).si_signo
    log("got " + signal.Signals(sig).name[3:])
    if sig in FATAL:
        time.sleep(cleanup)
        log("clean exit")
        os._exit(0)
"#;

/// A temporary directory, removed on drop.
pub struct Dir {
    dir: PathBuf,
}

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("procrun-test-{}", unique(tag)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir { dir }
    }

    /// A directory holding `Procfile`.
    pub fn with_procfile(tag: &str, procfile: &str) -> Dir {
        let d = Dir::new(tag);
        d.write("Procfile", procfile);
        d
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `name` (creating parent directories).
    pub fn write(&self, name: &str, text: &str) -> &Self {
        let p = self.file(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
        self
    }

    /// Writes a Procfile from `(name, command)` pairs; returns its path.
    pub fn procfile(&self, entries: &[(&str, String)]) -> PathBuf {
        let mut s = String::new();
        for (n, c) in entries {
            s += &format!("{n}: {c}\n");
        }
        self.write("Procfile", &s);
        self.file("Procfile")
    }

    /// The text of `name` (empty when missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Number of lines of file `name` equal to `line`.
    pub fn count(&self, name: &str, line: &str) -> usize {
        self.read(name).lines().filter(|l| *l == line).count()
    }

    /// Waits until every file in `names` has a line `line`.
    pub fn wait_all(&self, names: &[&str], line: &str, timeout: Duration) -> bool {
        wait_until(timeout, || names.iter().all(|n| self.count(n, line) > 0))
    }

    /// `python3 rec.py FILE CLEANUP` (the [`RECORDER`]) as a shell command.
    pub fn recorder(&self, file: &str, cleanup: f64) -> String {
        let script = self.file("rec.py");
        if !script.exists() {
            std::fs::write(&script, RECORDER).unwrap();
        }
        format!(
            "{} -I -S {} {} {cleanup}",
            python(),
            script.display(),
            self.file(file).display()
        )
    }

    /// A Procfile entry that is the recorder itself (`exec`: dash does not exec the last
    /// command of `sh -c` by itself, and a forwarded USR1 would kill the wrapping shell).
    pub fn entry(&self, file: &str, cleanup: f64) -> String {
        format!("exec {}", self.recorder(file, cleanup))
    }
}

/// Waits until every recorder in `files` wrote `ready`; panics with what there is otherwise.
pub fn ready_or_panic(s: &Dir, r: &Running, files: &[&str]) {
    assert!(
        s.wait_all(files, "ready", T),
        "children not ready: {:?}\nstdout:\n{}\nstderr:\n{}",
        files.iter().map(|f| (f, s.read(f))).collect::<Vec<_>>(),
        r.out(),
        r.err()
    );
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Captured output

/// Bytes read from one of procrun's descriptors by a thread, and whether EOF was seen.
#[derive(Default)]
pub struct Captured {
    data: Mutex<(Vec<u8>, bool)>,
    cv: Condvar,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Captured {
    fn closed() -> Arc<Captured> {
        let c = Arc::new(Captured::default());
        c.data.lock().unwrap().1 = true;
        c
    }

    /// Reads `fd` until EOF (or, with `head_one`, until the first newline, then closes it as
    /// `head -1` does).
    fn start(fd: OwnedFd, head_one: bool) -> Arc<Captured> {
        let cap = Arc::new(Captured::default());
        let c = Arc::clone(&cap);
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = vec![0u8; 65536];
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

    pub fn bytes(&self) -> Vec<u8> {
        self.data.lock().unwrap().0.clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap().0).into_owned()
    }

    pub fn len(&self) -> usize {
        self.data.lock().unwrap().0.len()
    }

    /// Waits until the output contains `needle` (true) or the deadline / EOF passes (false).
    /// Each byte is searched once (plus an overlap for a needle split between reads).
    pub fn wait_for(&self, timeout: Duration, needle: &str) -> bool {
        let needle = needle.as_bytes();
        let end = Instant::now() + timeout;
        let mut from = 0;
        let mut d = self.data.lock().unwrap();
        loop {
            if find(&d.0[from..], needle).is_some() {
                return true;
            }
            from = d.0.len().saturating_sub(needle.len().saturating_sub(1));
            let now = Instant::now();
            if d.1 || now >= end {
                return false;
            }
            d = self.cv.wait_timeout(d, end - now).unwrap().0;
        }
    }

    /// Hands every complete line (without its newline) to `f` once, in order, as lines arrive,
    /// until `f` returns true (true) or the deadline / EOF passes (false). Linear in the output:
    /// each new piece is copied out under the lock and scanned without it.
    pub fn each_line(&self, timeout: Duration, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut pos = 0;
        loop {
            let (chunk, eof) = {
                let mut d = self.data.lock().unwrap();
                loop {
                    let complete = d.0[pos..].iter().rposition(|&b| b == b'\n');
                    let now = Instant::now();
                    if let Some(last) = complete {
                        break (d.0[pos..pos + last + 1].to_vec(), false);
                    }
                    if d.1 || now >= end {
                        break (Vec::new(), true);
                    }
                    d = self.cv.wait_timeout(d, end - now).unwrap().0;
                }
            };
            if eof {
                return false;
            }
            pos += chunk.len();
            for line in chunk[..chunk.len() - 1].split(|&b| b == b'\n') {
                if f(line) {
                    return true;
                }
            }
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
    /// An ordinary child of the test process (procrun registers as child subreaper).
    Host,
    /// PID 1 of a new PID namespace (needs root; see [`skip_without_ns`]).
    Ns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// As a shell reports it: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A pipe read by the harness.
    Pipe,
    /// fd 1 is not open at all.
    Closed,
    /// A pipe whose reader takes one line and closes its end (`procrun start | head -1`).
    HeadOne,
    /// A pipe the test reads itself ([`Running::take_stdout`]): slow or blocked readers.
    Raw,
    /// A raw-mode pseudo-terminal (host only), read by the harness.
    Pty,
}

/// Anything that names a signal: a `libc::SIG*` number or a nix `Signal`.
pub trait SigNum: Copy {
    fn num(self) -> i32;
}

impl SigNum for i32 {
    fn num(self) -> i32 {
        self
    }
}

impl SigNum for nix::sys::signal::Signal {
    fn num(self) -> i32 {
        self as i32
    }
}

/// How to start procrun: built with [`procrun`] (or [`Launch::shell`]) and [`Launch::spawn`]ed.
pub struct Launch {
    mode: Mode,
    program: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    stdout: Out,
    /// Run on a new pty as session leader with it as controlling terminal (ns only).
    tty: bool,
    block: Vec<i32>,
    ignore: Vec<i32>,
    cgroup_procs: Option<PathBuf>,
    mount_ns_only: bool,
    /// `(source, target)` bind mounts in procrun's private mount namespace.
    binds: Vec<(PathBuf, PathBuf)>,
    realtime: bool,
    /// `(uid, gid)` to run procrun as (host mode).
    user: Option<(u32, u32)>,
}

/// `procrun ARGS` in `dir`, as an ordinary child of the test; see the builder methods.
pub fn procrun(dir: &Path, args: &[&str]) -> Launch {
    Launch {
        mode: Mode::Host,
        program: PathBuf::from(BIN),
        args: args.iter().map(OsString::from).collect(),
        dir: dir.to_path_buf(),
        env: Vec::new(),
        stdout: Out::Pipe,
        tty: false,
        block: Vec::new(),
        ignore: Vec::new(),
        cgroup_procs: None,
        mount_ns_only: false,
        binds: Vec::new(),
        realtime: false,
        user: None,
    }
}

impl Launch {
    /// `/bin/sh -c SCRIPT` in `dir` (the script usually ends by exec'ing procrun, so the pid
    /// the test signals is procrun's).
    pub fn shell(dir: &Path, script: &str) -> Launch {
        let mut l = procrun(dir, &["-c", script]);
        l.program = PathBuf::from("/bin/sh");
        l
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// PID 1 of a fresh PID namespace.
    pub fn ns(self) -> Self {
        self.mode(Mode::Ns)
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    pub fn stdout(mut self, out: Out) -> Self {
        self.stdout = out;
        self
    }

    /// All stdio on a new pseudo-terminal that is procrun's controlling terminal, procrun the
    /// session leader (`docker run -it`); namespace mode only.
    pub fn tty(mut self) -> Self {
        self.tty = true;
        self
    }

    /// Signals blocked in the state procrun inherits.
    pub fn block(mut self, sigs: &[i32]) -> Self {
        self.block = sigs.to_vec();
        self
    }

    /// Signals ignored in the state procrun inherits.
    pub fn ignore(mut self, sigs: &[i32]) -> Self {
        self.ignore = sigs.to_vec();
        self
    }

    /// A `cgroup.procs` file the launcher joins before creating the namespace.
    pub fn cgroup(mut self, procs: PathBuf) -> Self {
        self.cgroup_procs = Some(procs);
        self
    }

    /// Bind-mounts `program` over `/bin/sh` for this run. In host mode this uses the namespace
    /// launcher for a private mount namespace only (procrun is an ordinary grandchild of the
    /// test, not PID 1).
    pub fn sh(self, program: &str) -> Self {
        self.bind(program, "/bin/sh")
    }

    /// Bind-mounts `source` over `target` for this run (a private mount namespace, as
    /// [`Launch::sh`]).
    pub fn bind(mut self, source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        self.binds.push((source.into(), target.into()));
        self.mount_ns_only = self.mode == Mode::Host;
        self
    }

    /// Runs `program` instead of the procrun under test (a copy of it, say).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Runs procrun as user `uid`, group `gid` (host mode; the tests must run as root).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Runs procrun and its children with a real-time priority ([`realtime`]; host mode).
    pub fn realtime(mut self) -> Self {
        self.realtime = true;
        self
    }

    pub fn spawn(self) -> Running {
        let tag = unique("tag");
        if self.mode == Mode::Ns || self.mount_ns_only {
            ns::spawn(self, tag)
        } else {
            self.spawn_host(tag)
        }
    }

    /// Spawns and waits for the exit ([`T`]): (code as a shell reports it, stdout, stderr).
    pub fn run(self) -> (i32, String, String) {
        self.spawn().finish(T)
    }

    /// The environment procrun starts with.
    fn environment(&self, tag: &str) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string(),
            ),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
            (TAG_VAR.to_string(), tag.to_string()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    fn spawn_host(self, tag: String) -> Running {
        assert!(!self.tty, "controlling-terminal runs are ns only");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.environment(&tag))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let mut pty = None;
        match self.stdout {
            Out::Pipe | Out::HeadOne | Out::Raw => {
                cmd.stdout(Stdio::piped());
            }
            Out::Closed => {
                cmd.stdout(Stdio::null());
            }
            Out::Pty => {
                use nix::sys::termios;
                use std::os::fd::AsFd;
                let p = nix::pty::openpty(None, None).expect("openpty");
                let mut t = termios::tcgetattr(p.slave.as_fd()).unwrap();
                termios::cfmakeraw(&mut t);
                termios::tcsetattr(p.slave.as_fd(), termios::SetArg::TCSANOW, &t).unwrap();
                cmd.stdout(Stdio::from(p.slave.try_clone().unwrap()));
                pty = Some(p);
            }
        }
        let closed = self.stdout == Out::Closed;
        let (block, ignore) = (self.block.clone(), self.ignore.clone());
        let realtime = self.realtime;
        // SAFETY: sched_setscheduler/sigaction/sigprocmask/close are async-signal-safe and
        // nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                if realtime {
                    set_realtime();
                }
                ns::reset_signals(&block, &ignore);
                if closed {
                    libc::close(1);
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn procrun");
        let mut raw_stdout = None;
        let stdout = match (self.stdout, pty) {
            (Out::Pty, Some(p)) => {
                drop(p.slave);
                Captured::start(p.master, false)
            }
            (Out::Raw, _) => {
                raw_stdout = child
                    .stdout
                    .take()
                    .map(|s| std::fs::File::from(OwnedFd::from(s)));
                Captured::closed()
            }
            (out, _) => match child.stdout.take() {
                Some(s) => Captured::start(OwnedFd::from(s), out == Out::HeadOne),
                None => Captured::closed(),
            },
        };
        let stderr = Captured::start(OwnedFd::from(child.stderr.take().unwrap()), false);
        Running {
            mode: Mode::Host,
            pid: child.id() as i32,
            tag,
            start,
            stdout,
            stderr,
            raw_stdout,
            pty_master: None,
            inner: Inner::Host(child),
            exit: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A running procrun

enum Inner {
    Host(Child),
    /// The namespace launcher's intermediate process and its status pipe.
    Ns {
        intermediate: i32,
        status: std::fs::File,
    },
}

/// A running procrun; dropping it kills everything the test started.
pub struct Running {
    pub mode: Mode,
    /// procrun's host-side pid.
    pub pid: i32,
    pub tag: String,
    /// Just before fork (ns) / spawn (host).
    pub start: Instant,
    pub stdout: Arc<Captured>,
    pub stderr: Arc<Captured>,
    raw_stdout: Option<std::fs::File>,
    pty_master: Option<OwnedFd>,
    inner: Inner,
    exit: Option<Exit>,
}

impl Running {
    /// Sends `sig` to procrun (unless it has been reaped: no pid reuse).
    pub fn signal(&self, sig: impl SigNum) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(self.pid, sig.num()) };
        }
    }

    /// Sends `sig` to procrun's process group, as a terminal's Ctrl-C does (host mode: the
    /// harness makes procrun a group leader).
    pub fn signal_group(&self, sig: impl SigNum) {
        if self.exit.is_none() {
            // SAFETY: killpg(2) on the group our own unreaped child leads.
            unsafe { libc::killpg(self.pid, sig.num()) };
        }
    }

    /// The stdout pipe of an [`Out::Raw`] run.
    pub fn take_stdout(&mut self) -> std::fs::File {
        self.raw_stdout.take().expect("not an Out::Raw run")
    }

    /// True once procrun has exited (does not wait).
    pub fn exited(&mut self) -> bool {
        self.wait(Duration::ZERO).is_some()
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
            self.stdout.wait_eof(Duration::from_secs(5));
            self.stderr.wait_eof(Duration::from_secs(5));
        }
        self.exit
    }

    /// Waits for the exit, panicking with procrun's output after `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> Exit {
        match self.wait(timeout) {
            Some(e) => e,
            None => panic!(
                "procrun ({:?}) did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}\n\
                 its processes (pid comm state ppid pgid):\n{}",
                self.mode,
                self.out(),
                self.err(),
                describe(self.pid)
            ),
        }
    }

    /// Waits for the exit (panicking after `timeout`): (code as a shell reports it, stdout,
    /// stderr).
    pub fn finish(mut self, timeout: Duration) -> (i32, String, String) {
        let code = self.expect_exit(timeout).code();
        (code, self.out(), self.err())
    }

    pub fn out(&self) -> String {
        self.stdout.text()
    }

    pub fn err(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stdout contains `needle` (false after `timeout` or at EOF).
    pub fn wait_out(&self, timeout: Duration, needle: &str) -> bool {
        self.stdout.wait_for(timeout, needle)
    }

    /// Waits until stdout contains `needle`; panics with the output after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        assert!(
            self.stdout.wait_for(timeout, needle),
            "timed out waiting for {needle:?}; stdout:\n{}\nstderr:\n{}",
            self.out(),
            self.err()
        );
    }

    /// Waits until stderr contains `needle`; panics with it after `timeout`.
    pub fn wait_for_err(&self, needle: &str, timeout: Duration) {
        assert!(
            self.stderr.wait_for(timeout, needle),
            "timed out waiting for {needle:?} on stderr:\n{}",
            self.err()
        );
    }

    /// The pid of `name` (e.g. `web.1`) from its `started (pid=N)` line, once it is there.
    pub fn pid_of(&self, name: &str) -> i32 {
        let key = format!("{name} started (pid=");
        self.wait_for(&key, T);
        let out = self.out();
        let rest = &out[out.find(&key).unwrap() + key.len()..];
        rest[..rest.find(')').unwrap()].parse().unwrap()
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

    /// Writes bytes to the controlling terminal ([`Launch::tty`]).
    pub fn type_keys(&self, bytes: &[u8]) {
        let m = self.pty_master.as_ref().expect("no pty");
        let mut f = std::fs::File::from(m.try_clone().unwrap());
        f.write_all(bytes).unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SAFETY: our own child, not reaped yet; in host mode it leads its own group.
            unsafe {
                if self.mode == Mode::Host {
                    libc::killpg(self.pid, libc::SIGKILL);
                }
                libc::kill(self.pid, libc::SIGKILL);
            }
            let _ = self.wait(Duration::from_secs(5));
        }
        // Kill whatever of ours survived (leaks, or a failed assertion mid-test).
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
        match &mut self.inner {
            Inner::Ns { intermediate, .. } if *intermediate > 0 => {
                let mut s = 0;
                // SAFETY: reaping our own child.
                unsafe { libc::waitpid(*intermediate, &mut s, 0) };
            }
            Inner::Host(child) => {
                let _ = child.wait();
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output normalisation (the honcho corpus)

/// Timestamps, pids and the case directory replaced by placeholders.
pub fn normalise(text: &str, casedir: &Path) -> String {
    let ts = regex::Regex::new(r"(?m)^((?:\x1b\[[0-9;]*m)*)\d\d:\d\d:\d\d ").unwrap();
    let text = ts.replace_all(text, "${1}HH:MM:SS ");
    let text = regex::Regex::new(r"pid=\d+")
        .unwrap()
        .replace_all(&text, "pid=PID");
    let text = regex::Regex::new(r"\(pid \d+\)")
        .unwrap()
        .replace_all(&text, "(pid PID)");
    text.replace(&casedir.display().to_string(), "<casedir>")
}

/// Sorts runs of consecutive `started` / `stopped` system lines (their order is racy).
pub fn sort_racy_runs(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let kind = |l: &str| {
        if l.contains("| ") && l.ends_with(')') && l.contains(" started (pid=") {
            1
        } else if l.contains(" stopped (rc=") {
            2
        } else {
            0
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let k = kind(&lines[i]);
        let mut j = i + 1;
        while k != 0 && j < lines.len() && kind(&lines[j]) == k {
            j += 1;
        }
        lines[i..j].sort();
        i = j;
    }
    lines
}

// Status endpoint clients.

/// A port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` with `Connection: close`: status and body (hard timeouts).
pub fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The endpoint address procrun logs on stderr (it was asked for port 0).
pub fn endpoint(r: &Running) -> std::net::SocketAddr {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let err = r.err();
        if let Some(rest) = err.split("status endpoint on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            return addr.parse().unwrap();
        }
        assert!(Instant::now() < end, "no endpoint line; stderr:\n{err}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
