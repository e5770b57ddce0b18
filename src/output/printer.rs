//! The printer: the only writer of procrun's stdout.
//!
//! The event loop formats whole lines into a local batch (`line`, `system`) and hands each
//! batch to a dedicated writer thread (`commit`), so a slow or blocked stdout never stalls
//! supervision. The hand-off buffer is bounded: while it holds more than `LIMIT` bytes,
//! `has_room` is false and the pipe readers stop reading, so children block on their own
//! pipes instead of procrun's memory growing. If stdout breaks (EPIPE), output is dropped with
//! one warning on stderr and supervision goes on.

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

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    writing: bool,
    closing: bool,
    broken: bool,
    dropped_bytes: u64,
}

struct Shared {
    state: Mutex<State>,
    wake_writer: Condvar,
    written: Condvar,
    room: tokio::sync::Notify,
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

impl Printer {
    /// Creates the printer and its writer thread. `names` fixes the column width.
    pub(crate) fn new(style: Style, names: &[&str]) -> std::io::Result<Printer> {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake_writer: Condvar::new(),
            written: Condvar::new(),
            room: tokio::sync::Notify::new(),
        });
        let for_thread = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("stdout".into())
            .stack_size(64 * 1024)
            .spawn(move || writer(&for_thread))?;
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
        let mut st = lock(&self.shared.state);
        if st.broken {
            st.dropped_bytes += batch.len() as u64;
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

    /// False while the writer is more than `LIMIT` bytes behind.
    pub(crate) fn has_room(&self) -> bool {
        lock(&self.shared.state).pending.len() < LIMIT
    }

    /// Waits until `has_room`.
    pub(crate) async fn wait_room(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    /// Waits (blocking) until everything is written or `deadline`; returns the bytes left.
    pub(crate) fn finish(&self, deadline: Instant) -> u64 {
        self.commit();
        let mut st = lock(&self.shared.state);
        while (st.writing || !st.pending.is_empty()) && !st.broken {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .written
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.closing = true;
        let left = st.pending.len() as u64;
        drop(st);
        self.shared.wake_writer.notify_one();
        left
    }
}

/// The writer thread: takes batches and writes them to fd 1 until told to close.
fn writer(shared: &Shared) {
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
            st.writing = true;
        }
        let result = write_all_stdout(&buf);
        let len = buf.len() as u64;
        buf.clear();
        if buf.capacity() > 4 * LIMIT {
            buf = Vec::new();
        }
        let newly_broken = {
            let mut st = lock(&shared.state);
            st.writing = false;
            match &result {
                Ok(()) => false,
                Err(_) => {
                    st.dropped_bytes += len + st.pending.len() as u64;
                    st.pending.clear();
                    !std::mem::replace(&mut st.broken, true)
                }
            }
        };
        // Warned without the lock held: a blocked stderr must not stall the event loop.
        if let (true, Err(e)) = (newly_broken, &result) {
            crate::warn(&format!(
                "stdout is closed ({e}); process output is discarded from now on"
            ));
        }
        shared.written.notify_all();
        shared.room.notify_waiters();
    }
}

fn write_all_stdout(mut data: &[u8]) -> std::io::Result<()> {
    use nix::errno::Errno;
    use std::os::fd::AsFd;
    // Raw writes on fd 1: std's `Stdout` is only used for its descriptor (no buffering, no
    // lock, no panic on EPIPE).
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                // stdout was handed to us non-blocking: wait until it accepts more.
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
