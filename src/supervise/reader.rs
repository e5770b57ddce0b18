//! One task per started process reads its output pipe and hands whole lines to the printer.
//!
//! The event loop needs to tell a pipe that is *idle* (empty, perhaps held open by a
//! background job after the shell exited) from one that is merely *unread* (the reader is
//! paused because stdout is behind, or has not been scheduled yet): only the first may be
//! given up on. So the reader records the moment it last found the pipe empty
//! (`idle_since`), and clears it whenever it reads data or pauses for room.

use crate::output::lines::LineSplitter;
use crate::output::printer::Printer;
use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedSender;

/// A partial line is printed after this long without more output.
const QUIET: Duration = Duration::from_millis(1000);
/// Longest line printed in one piece.
const LINE_LIMIT: usize = 64 * 1024;

/// What the event loop can see of a reader.
#[derive(Debug, Default)]
pub(crate) struct ReaderState {
    /// The pipe reached EOF (or failed); everything read was handed to the printer.
    pub(crate) eof: Cell<bool>,
    /// Since when the pipe has been found empty, with the reader waiting for data.
    pub(crate) idle_since: Cell<Option<Instant>>,
}

impl ReaderState {
    /// The pipe has been empty, and the reader waiting on it, for `quiet` by `now` (counted
    /// from `not_before` at the earliest).
    pub(crate) fn idle_for(&self, quiet: Duration, not_before: Instant, now: Instant) -> bool {
        self.idle_deadline(quiet, not_before)
            .is_some_and(|at| now >= at)
    }

    /// When the pipe will have been idle for `quiet`, if it is idle now.
    pub(crate) fn idle_deadline(&self, quiet: Duration, not_before: Instant) -> Option<Instant> {
        self.idle_since.get().map(|t| t.max(not_before) + quiet)
    }
}

/// What a reader needs.
pub(crate) struct Reader {
    /// The printer's source for these lines.
    pub(crate) index: usize,
    pub(crate) output: OwnedFd,
    pub(crate) printer: Rc<Printer>,
    pub(crate) state: Rc<ReaderState>,
    /// Told when the reader is through (the state says whose).
    pub(crate) done: UnboundedSender<()>,
    /// A read buffer shared by every reader (they never hold it across an await).
    pub(crate) buf: Rc<RefCell<Vec<u8>>>,
}

enum Read {
    Data(usize),
    Eof,
    Empty,
}

fn read_now(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> Read {
    loop {
        return match nix::unistd::read(fd.get_ref(), buf) {
            Ok(0) => Read::Eof,
            Ok(n) => Read::Data(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => Read::Empty,
            Err(_) => Read::Eof,
        };
    }
}

impl Reader {
    /// Reads until EOF, then tells the event loop.
    pub(crate) async fn run(self) {
        if let Ok(fd) = super::signals::register_pipe(self.output) {
            read_lines(self.index, &fd, &self.printer, &self.state, &self.buf).await;
        }
        self.state.idle_since.set(None);
        self.state.eof.set(true);
        let _ = self.done.send(());
    }
}

/// The read loop: pauses while the printer has no room, flushes a partial line after
/// `QUIET`, returns at EOF (or on an error) with everything handed to the printer.
async fn read_lines(
    index: usize,
    fd: &AsyncFd<OwnedFd>,
    printer: &Printer,
    state: &ReaderState,
    buf: &RefCell<Vec<u8>>,
) {
    let mut splitter = LineSplitter::new(LINE_LIMIT);
    loop {
        if !printer.has_room() {
            state.idle_since.set(None);
            printer.wait_room().await;
        }
        let read = read_now(fd, &mut buf.borrow_mut());
        match read {
            Read::Data(n) => {
                state.idle_since.set(None);
                printer.stamp_now();
                splitter.feed(&buf.borrow()[..n], |l| printer.line(index, l));
                printer.commit();
            }
            Read::Eof => break,
            Read::Empty => {
                if state.idle_since.get().is_none() {
                    state.idle_since.set(Some(Instant::now()));
                }
                let ready = if splitter.has_partial() {
                    tokio::select! {
                        r = fd.readable() => Some(r),
                        _ = tokio::time::sleep(QUIET) => None,
                    }
                } else {
                    Some(fd.readable().await)
                };
                match ready {
                    // Readiness is cleared here and set again by the next edge, so the next
                    // `readable()` waits for new data instead of returning at once.
                    Some(Ok(mut guard)) => guard.clear_ready(),
                    Some(Err(_)) => break,
                    None => {
                        printer.stamp_now();
                        splitter.flush(|l| printer.line(index, l));
                        printer.commit();
                    }
                }
            }
        }
    }
    printer.stamp_now();
    splitter.flush(|l| printer.line(index, l));
    printer.commit();
}
