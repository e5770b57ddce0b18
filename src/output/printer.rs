//! The printer: the only writer of procrun's stdout during `start`.
//!
//! The event loop formats whole lines into a local batch (`line`, `system`) and hands each
//! batch to a dedicated writer thread (`commit`), so a slow or blocked stdout never stalls
//! supervision. The hand-off buffer is bounded: while it holds more than `LIMIT` bytes,
//! `has_room` is false and the pipe readers stop reading, so children block on their own
//! pipes instead of procrun's memory growing. Nothing is ever dropped because stdout is slow;
//! output is only discarded when stdout is closed (EPIPE: one warning, supervision goes on) or
//! when the event loop gives up on a stdout that makes no progress at shutdown (`discard`),
//! and then every discarded byte is counted.
//!
//! When stdout is a pipe, the writer writes through its own non-blocking open file description
//! of it (`/proc/self/fd/1`), leaving the shared one as it is: a write never blocks, so the
//! writer always knows exactly how many bytes went out and can stop at once when told to.

use crate::time;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes waiting for the writer thread above which readers pause.
pub(crate) const LIMIT: usize = 256 * 1024;

/// honcho's colour cycle (ANSI SGR parameters), assigned per process instance in start order.
const COLOURS: [&str; 12] = [
    "36", "33", "32", "35", "31", "34", "36;1", "33;1", "32;1", "35;1", "31;1", "34;1",
];

/// The layout of output lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// `HH:MM:SS web.1 | text`, as honcho.
    #[default]
    Text,
    /// One JSON object per line: time (RFC 3339, UTC), name, pid, text.
    Json,
}

/// The time column of text lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TimestampFormat {
    /// `HH:MM:SS`, local time (honcho).
    #[default]
    Time,
    /// `2026-01-02T03:04:05.678Z`, UTC with milliseconds.
    Rfc3339,
}

/// How lines are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) colour: bool,
    pub(crate) prefix: bool,
    pub(crate) timestamp: bool,
    pub(crate) timestamp_format: TimestampFormat,
    pub(crate) format: LogFormat,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            colour: false,
            prefix: true,
            timestamp: true,
            timestamp_format: TimestampFormat::Time,
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug)]
struct Source {
    /// `web.1`, padded for text output.
    padded: Vec<u8>,
    name: String,
    pid: u32,
    colour_start: Vec<u8>,
    quiet: bool,
}

struct State {
    /// Committed bytes the writer has not taken yet.
    pending: Vec<u8>,
    /// Bytes of the batch the writer holds that are not written yet.
    in_flight: usize,
    /// Every byte handed to the writer, and every byte it wrote (or discarded).
    committed: u64,
    written: u64,
    /// Bytes discarded (stdout closed, or given up on).
    dropped: u64,
    /// Last time a byte was written, or the time output started waiting.
    last_progress: Instant,
    closing: bool,
    /// stdout is closed (EPIPE): everything is dropped.
    broken: bool,
    /// Given up on stdout: everything not yet written is dropped.
    discard: bool,
}

impl State {
    fn unwritten(&self) -> u64 {
        self.committed - self.written - self.dropped
    }
}

struct Shared {
    state: Mutex<State>,
    wake_writer: Condvar,
    /// Woken on every write (progress, room, flushed).
    progress: tokio::sync::Notify,
}

/// The stdout owner. Used from the event-loop thread; the writer thread is private.
pub(crate) struct Printer {
    style: Style,
    width: usize,
    sources: RefCell<Vec<Source>>,
    batch: RefCell<Vec<u8>>,
    stamp: RefCell<(i64, u32, Vec<u8>)>,
    shared: Arc<Shared>,
    system_pid: u32,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What became of the output, at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Bytes never written (discarded, or still unwritten).
    pub(crate) dropped: u64,
    /// stdout was closed (already reported when it happened).
    pub(crate) broken: bool,
}

impl Printer {
    /// Creates the printer and its writer thread. `names` fixes the column width.
    pub(crate) fn new(style: Style, names: &[&str]) -> std::io::Result<Printer> {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                in_flight: 0,
                committed: 0,
                written: 0,
                dropped: 0,
                last_progress: Instant::now(),
                closing: false,
                broken: false,
                discard: false,
            }),
            wake_writer: Condvar::new(),
            progress: tokio::sync::Notify::new(),
        });
        let out = Stdout::open();
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("stdout".into())
            .stack_size(64 * 1024)
            .spawn(move || writer(&for_thread, &out))?;
        Ok(Printer {
            style,
            width,
            sources: RefCell::new(Vec::new()),
            batch: RefCell::new(Vec::with_capacity(16 * 1024)),
            stamp: RefCell::new((-1, 0, Vec::new())),
            shared,
            system_pid: std::process::id(),
        })
    }

    /// Registers a process's output source; returns its index for `line`.
    pub(crate) fn add_source(&self, name: &str, pid: u32, quiet: bool) -> usize {
        let mut sources = self.sources.borrow_mut();
        let index = sources.len();
        let colour_start = format!("\x1b[0m\x1b[{}m", COLOURS[index % COLOURS.len()]).into_bytes();
        sources.push(Source {
            padded: format!("{name:<w$}", w = self.width).into_bytes(),
            name: name.to_string(),
            pid,
            colour_start,
            quiet,
        });
        index
    }

    /// The pid shown for source `index` in JSON lines (a restarted process has a new one).
    pub(crate) fn set_pid(&self, index: usize, pid: u32) {
        if let Some(src) = self.sources.borrow_mut().get_mut(index) {
            src.pid = pid;
        }
    }

    /// Refreshes the timestamp used by the following lines (call once per batch).
    pub(crate) fn stamp_now(&self) {
        if !self.style.timestamp && self.style.format == LogFormat::Text {
            return;
        }
        let (secs, millis) = time::now();
        let mut stamp = self.stamp.borrow_mut();
        let rfc = self.style.format == LogFormat::Json
            || self.style.timestamp_format == TimestampFormat::Rfc3339;
        if rfc {
            if stamp.0 != secs || stamp.1 != millis {
                *stamp = (secs, millis, time::rfc3339_utc(secs, millis).into_bytes());
            }
        } else if stamp.0 != secs {
            *stamp = (secs, 0, time::local_hms(secs).to_vec());
        }
    }

    /// Appends one output line of source `index` to the batch.
    pub(crate) fn line(&self, index: usize, text: &[u8]) {
        let sources = self.sources.borrow();
        let Some(src) = sources.get(index) else {
            return;
        };
        if src.quiet {
            return;
        }
        let mut batch = self.batch.borrow_mut();
        match self.style.format {
            LogFormat::Json => self.json(&mut batch, &src.name, src.pid, text),
            LogFormat::Text => {
                let colour = self.style.colour && self.style.prefix;
                if colour {
                    batch.extend_from_slice(&src.colour_start);
                }
                self.text_prefix(&mut batch, &src.padded);
                if colour {
                    batch.extend_from_slice(b"\x1b[0m");
                }
                batch.extend_from_slice(text);
                batch.push(b'\n');
            }
        }
    }

    fn text_prefix(&self, batch: &mut Vec<u8>, padded: &[u8]) {
        if !self.style.prefix {
            return;
        }
        if self.style.timestamp {
            batch.extend_from_slice(&self.stamp.borrow().2);
            batch.push(b' ');
        }
        batch.extend_from_slice(padded);
        batch.extend_from_slice(b" | ");
    }

    fn json(&self, batch: &mut Vec<u8>, name: &str, pid: u32, text: &[u8]) {
        batch.extend_from_slice(b"{\"time\":\"");
        batch.extend_from_slice(&self.stamp.borrow().2);
        batch.extend_from_slice(b"\",\"name\":");
        crate::text::json_string(batch, name.as_bytes());
        batch.extend_from_slice(b",\"pid\":");
        let _ = std::io::Write::write_fmt(batch, format_args!("{pid}"));
        batch.extend_from_slice(b",\"text\":");
        crate::text::json_string(batch, text);
        batch.extend_from_slice(b"}\n");
    }

    /// Prints a `system` line now (never coloured, never quiet).
    pub(crate) fn system(&self, text: &str) {
        self.stamp_now();
        {
            let mut batch = self.batch.borrow_mut();
            match self.style.format {
                LogFormat::Json => {
                    self.json(&mut batch, "system", self.system_pid, text.as_bytes())
                }
                LogFormat::Text => {
                    let padded = format!("{:<w$}", "system", w = self.width);
                    self.text_prefix(&mut batch, padded.as_bytes());
                    batch.extend_from_slice(text.as_bytes());
                    batch.push(b'\n');
                }
            }
        }
        self.commit();
    }

    /// Hands the batch to the writer thread.
    pub(crate) fn commit(&self) {
        let mut batch = self.batch.borrow_mut();
        if batch.is_empty() {
            return;
        }
        let len = batch.len() as u64;
        let mut st = lock(&self.shared.state);
        if st.unwritten() == 0 {
            // The clock of "no progress" starts when there is something to write.
            st.last_progress = Instant::now();
        }
        st.committed += len;
        if st.broken || st.discard {
            st.dropped += len;
            batch.clear();
            return;
        }
        if st.pending.is_empty() {
            std::mem::swap(&mut st.pending, &mut batch);
        } else {
            st.pending.extend_from_slice(&batch);
            batch.clear();
        }
        drop(st);
        self.shared.wake_writer.notify_one();
    }

    /// False while the writer is more than `LIMIT` bytes behind (never once output is
    /// discarded).
    pub(crate) fn has_room(&self) -> bool {
        let st = lock(&self.shared.state);
        st.discard || st.broken || st.pending.len() < LIMIT
    }

    /// Waits until `has_room`.
    pub(crate) async fn wait_room(&self) {
        loop {
            let notified = self.shared.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves when the writer makes progress (or output is discarded) after this call;
    /// `enable` it before looking at the state it may change.
    pub(crate) fn progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.progress.notified()
    }

    /// True when every committed byte is written (or dropped).
    pub(crate) fn flushed(&self) -> bool {
        self.batch.borrow().is_empty() && lock(&self.shared.state).unwritten() == 0
    }

    /// How long stdout has made no progress while there was output to write (zero when
    /// everything is written).
    pub(crate) fn stalled_for(&self, now: Instant) -> Duration {
        let st = lock(&self.shared.state);
        if st.unwritten() == 0 || st.discard || st.broken {
            Duration::ZERO
        } else {
            now.saturating_duration_since(st.last_progress)
        }
    }

    /// Gives up on stdout: what is not written yet, and everything from now on, is dropped
    /// (and counted). The writer stops within its poll interval.
    pub(crate) fn discard(&self) {
        let mut st = lock(&self.shared.state);
        if st.discard {
            return;
        }
        st.discard = true;
        let pending = st.pending.len() as u64;
        st.dropped += pending;
        st.pending = Vec::new();
        drop(st);
        self.shared.wake_writer.notify_one();
        self.shared.progress.notify_waiters();
    }

    /// Ends the writer: returns what became of the output. Call once everything is flushed
    /// or discarded; a writer still blocked in a write (a terminal or socket that takes
    /// nothing) is left behind and counts as dropped.
    pub(crate) fn finish(&self) -> Outcome {
        self.commit();
        let mut st = lock(&self.shared.state);
        st.closing = true;
        if st.discard && st.in_flight > 0 {
            // The writer gives up its batch within a poll interval; wait for the exact count.
            let until = Instant::now() + WRITE_POLL * 2;
            while st.in_flight > 0 && Instant::now() < until {
                st = self
                    .shared
                    .wake_writer
                    .wait_timeout(st, WRITE_POLL)
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let outcome = Outcome {
            dropped: st.dropped + st.unwritten(),
            broken: st.broken,
        };
        drop(st);
        self.shared.wake_writer.notify_all();
        outcome
    }
}

/// How long the writer waits for a full pipe before it looks at its flags again.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// Where the writer writes: fd 1, or a private non-blocking description of the same pipe.
struct Stdout {
    private: Option<std::os::fd::OwnedFd>,
}

impl Stdout {
    fn open() -> Stdout {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::{Mode, SFlag, fstat};
        let is_fifo = fstat(std::io::stdout())
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO)
            .unwrap_or(false);
        // Opening /proc/self/fd/1 of a pipe gives a new open file description of the same
        // pipe; O_NONBLOCK on it does not change the one procrun shares with others.
        let private = is_fifo
            .then(|| {
                open(
                    "/proc/self/fd/1",
                    OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            })
            .flatten();
        Stdout { private }
    }

    /// Writes a prefix of `data`; `Ok(0)` when the pipe is full (after waiting up to
    /// `WRITE_POLL` for room).
    fn write(&self, data: &[u8]) -> std::io::Result<usize> {
        use nix::errno::Errno;
        use std::os::fd::AsFd;
        let stdout = std::io::stdout();
        let fd = match &self.private {
            Some(fd) => fd.as_fd(),
            None => stdout.as_fd(),
        };
        loop {
            match nix::unistd::write(fd, data) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                    let timeout = nix::poll::PollTimeout::try_from(WRITE_POLL)
                        .unwrap_or(nix::poll::PollTimeout::MAX);
                    let _ = nix::poll::poll(&mut fds, timeout);
                    return Ok(0);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The writer thread: takes batches and writes them to stdout until told to close.
fn writer(shared: &Shared, out: &Stdout) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        {
            let mut st = lock(&shared.state);
            while st.pending.is_empty() && !st.closing {
                st = shared
                    .wake_writer
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if st.pending.is_empty() {
                return;
            }
            std::mem::swap(&mut st.pending, &mut buf);
            st.in_flight = buf.len();
        }
        let mut at = 0;
        let mut failure = None;
        while at < buf.len() {
            let result = out.write(&buf[at..]);
            let mut st = lock(&shared.state);
            match result {
                Ok(n) => {
                    at += n;
                    st.in_flight -= n;
                    if n > 0 {
                        st.written += n as u64;
                        st.last_progress = Instant::now();
                    }
                }
                Err(e) => failure = Some(e),
            }
            if failure.is_some() || st.discard {
                let rest = (buf.len() - at) as u64 + st.pending.len() as u64;
                st.dropped += rest;
                st.in_flight = 0;
                st.pending = Vec::new();
                let newly_broken = failure.is_some() && !std::mem::replace(&mut st.broken, true);
                drop(st);
                shared.wake_writer.notify_all();
                // Warned without the lock held: a blocked stderr must not stall the loop.
                if let (true, Some(e)) = (newly_broken, &failure) {
                    crate::warn(&format!(
                        "stdout is closed ({e}); process output is discarded from now on"
                    ));
                }
                break;
            }
            drop(st);
            shared.progress.notify_waiters();
        }
        shared.progress.notify_waiters();
        buf.clear();
        if buf.capacity() > 4 * LIMIT {
            buf = Vec::new();
        }
    }
}
