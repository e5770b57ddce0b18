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
