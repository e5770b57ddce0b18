//! Shared helpers for integration tests: run the real binary with a hard timeout, read its
//! output as it comes, wait for events, normalise timestamps and pids.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_procrun");

/// A running procrun in its own process group; killed (group and all) when dropped.
pub struct Running {
    pub child: Child,
    pub out: Arc<Mutex<Vec<u8>>>,
    pub err: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }
    /// Waits until stdout contains `needle`; panics with the output after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.stdout().contains(needle) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {needle:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
    /// Waits for exit (and EOF on stdout/stderr); panics after `timeout`.
    pub fn finish(mut self, timeout: Duration) -> (i32, String, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < end,
                "procrun did not exit within {timeout:?}; stdout:\n{}",
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = self.done.recv_timeout(Duration::from_secs(5));
        let _ = self.done.recv_timeout(Duration::from_secs(5));
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        (code, self.stdout(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-self.pid());
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(mut from: impl Read + Send + 'static, to: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => to.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
        let _ = done.send(());
    });
}

impl Running {
    /// Wraps a child whose stdout is not captured (only stderr is piped).
    pub fn from_child(mut child: Child) -> Running {
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        if let Some(e) = child.stderr.take() {
            pump(e, Arc::clone(&err), tx.clone());
        }
        let _ = tx.send(());
        Running {
            child,
            out,
            err,
            done,
        }
    }
}

/// Starts `cmd` (stdout/stderr captured, stdin /dev/null) in a new process group.
pub fn spawn(mut cmd: Command) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn procrun");
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    pump(child.stdout.take().unwrap(), Arc::clone(&out), tx.clone());
    pump(child.stderr.take().unwrap(), Arc::clone(&err), tx);
    Running {
        child,
        out,
        err,
        done,
    }
}

/// A procrun command with a clean environment, run in `dir`.
pub fn procrun(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("TZ", "UTC");
    cmd
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("procrun-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn write(&self, name: &str, text: &str) -> &Self {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
        self
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// honcho-cases normalisation: timestamps, pids, the case directory.
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

/// Whether the environment demands that tests needing root run (CI runs as root and sets
/// `PROCRUN_REQUIRE_PID1=1`): then a test that cannot run fails instead of skipping.
pub fn root_required() -> bool {
    std::env::var("PROCRUN_REQUIRE_PID1").is_ok_and(|v| v == "1")
}

/// Skips `test` visibly (on the terminal, past the test harness's capture), or fails it when
/// [`root_required`].
pub fn skip(test: &str, why: &str) {
    assert!(
        !root_required(),
        "{test}: {why}, and PROCRUN_REQUIRE_PID1=1 requires it to run"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// A DNS server that reads queries and never answers, made the system's resolver for chosen
/// commands only: each runs in a private mount namespace where `/etc/resolv.conf` names this
/// server (with a 30 s timeout per try) and `/etc/nsswitch.conf` says `hosts: files dns`, so no
/// other source answers. Needs root (a mount namespace, port 53 on a loopback address).
pub struct SilentDns {
    queries: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    dir: TempDir,
}

impl SilentDns {
    /// The server, or `None` after [`skip`] when it cannot be set up here.
    pub fn start(test: &str) -> Option<SilentDns> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        // A loopback address of our own: port 53 of 127.0.0.1 may be a local resolver's.
        let pid = std::process::id();
        let mut socket = None;
        for i in 0..64u32 {
            let ip = std::net::Ipv4Addr::new(127, 53, (pid % 251) as u8, (i * 4 + 1) as u8);
            match std::net::UdpSocket::bind((ip, 53)) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    skip(
                        test,
                        &format!("cannot bind a DNS server on {ip}:53 (needs root): {e}"),
                    );
                    return None;
                }
            }
        }
        let socket = socket.expect("a free loopback address for the DNS server");
        let ip = socket.local_addr().unwrap().ip();
        let dir = TempDir::new("silent-dns");
        dir.write(
            "resolv.conf",
            &format!("nameserver {ip}\noptions timeout:30 attempts:5\n"),
        )
        .write("nsswitch.conf", "hosts: files dns\n");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (Arc::clone(&queries), Arc::clone(&stop));
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if socket.recv_from(&mut buf).is_ok() {
                    q.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let dns = SilentDns { queries, stop, dir };
        // Check that the namespace and the mounts work, with the code the tests use.
        let mut probe = Command::new("/bin/true");
        dns.apply(&mut probe);
        match probe.status() {
            Ok(s) if s.success() => Some(dns),
            Ok(s) => panic!("/bin/true in the resolver's namespace: {s}"),
            Err(e) => {
                skip(
                    test,
                    &format!("cannot give a command its own /etc/resolv.conf (needs root): {e}"),
                );
                None
            }
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes `cmd` resolve names through this server only.
    pub fn apply(&self, cmd: &mut Command) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let resolv = cstr(&self.dir.path().join("resolv.conf"));
        let nss = cstr(&self.dir.path().join("nsswitch.conf"));
        let has_nss = Path::new("/etc/nsswitch.conf").exists();
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: between fork and exec the closure only makes system calls (unshare, mount)
        // on strings prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let none = std::ptr::null();
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let (private, bind) = (libc::MS_REC | libc::MS_PRIVATE, libc::MS_BIND);
                check(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    private,
                    std::ptr::null(),
                ))?;
                let etc_resolv = c"/etc/resolv.conf".as_ptr();
                check(libc::mount(
                    resolv.as_ptr(),
                    etc_resolv,
                    none,
                    bind,
                    std::ptr::null(),
                ))?;
                if has_nss {
                    let etc_nss = c"/etc/nsswitch.conf".as_ptr();
                    check(libc::mount(
                        nss.as_ptr(),
                        etc_nss,
                        none,
                        bind,
                        std::ptr::null(),
                    ))?;
                }
                Ok(())
            });
        }
    }
}

impl Drop for SilentDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
