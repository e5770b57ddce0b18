//! Signals become events at the edge.
//!
//! `block_all` runs as the first statement of `main`: from then on no asynchronous signal is
//! lost (as PID 1 the kernel would discard a signal with no handler) but queued, and the event
//! loop reads them from a signalfd. Children get the mask procrun inherited back (see `spawn`).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;

/// Synchronous fault signals stay unblocked (blocking them hides crashes); SIGPIPE stays
/// ignored (Rust's default) so writes to a closed pipe return EPIPE.
const NOT_BLOCKED: [Signal; 8] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGPIPE,
];

/// The set procrun blocks and reads from its signalfd.
pub(crate) fn handled_set() -> SigSet {
    let mut set = SigSet::all();
    for s in NOT_BLOCKED {
        set.remove(s);
    }
    set
}

/// The mask procrun inherited, saved by whichever of `block_at_load` / `block_all` ran first.
static INHERITED: std::sync::OnceLock<SigSet> = std::sync::OnceLock::new();

fn block_now() -> SigSet {
    let mut old = SigSet::empty();
    // Cannot fail with valid arguments; if it did, signals would simply stay unblocked.
    let _ = nix::sys::signal::pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&handled_set()),
        Some(&mut old),
    );
    old
}

/// Blocks every asynchronous signal; for the binary's `.init_array` constructor, which runs
/// before Rust's runtime and `main`. That narrows the window in which the kernel discards a
/// signal sent to a fresh PID 1 to the program loader's own work.
pub(crate) extern "C" fn block_at_load() {
    let _ = INHERITED.set(block_now());
    // Rust's runtime ignores SIGPIPE right after this; remember what procrun inherited so that
    // children get that back (default, unless procrun itself was started with it ignored).
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: querying (not changing) a disposition: a null new action and a zeroed, writable
    // `sigaction` for the old one.
    let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) } == 0;
    // SAFETY: zero-initialised above and filled by a successful `sigaction`.
    if ok && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN {
        PIPE_IGNORED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether procrun was started with SIGPIPE ignored (known only when the constructor ran).
pub(crate) static PIPE_IGNORED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Blocks every asynchronous signal in the calling (main) thread, if the constructor has not
/// already; returns the mask procrun inherited, to be restored in children.
pub(crate) fn block_all() -> SigSet {
    *INHERITED.get_or_init(block_now)
}

/// The async stream of signals received by procrun.
pub(crate) struct Signals {
    fd: AsyncFd<SignalFd>,
}

impl Signals {
    /// Opens the signalfd; signals that arrived since `block_all` are pending and come first.
    pub(crate) fn new() -> std::io::Result<Signals> {
        Signals::with_set(&handled_set())
    }

    /// Also reads SIGPIPE (sent with `kill`), for `run`, which forwards every catchable
    /// signal as tini and dumb-init do. SIGPIPE is blocked from here on: a write of procrun's
    /// own to a broken pipe then fails with EPIPE as before.
    pub(crate) fn with_sigpipe() -> std::io::Result<Signals> {
        let mut set = handled_set();
        set.add(Signal::SIGPIPE);
        let mut pipe = SigSet::empty();
        pipe.add(Signal::SIGPIPE);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&pipe), None)?;
        Signals::with_set(&set)
    }

    fn with_set(set: &SigSet) -> std::io::Result<Signals> {
        let sfd = SignalFd::with_flags(set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        // SAFETY: the SignalFd owns its descriptor, which stays open and unchanged until the
        // AsyncFd (and with it the SignalFd) is dropped.
        let fd = unsafe { AsyncFd::register(sfd) }.map_err(std::io::Error::from)?;
        Ok(Signals { fd })
    }

    /// `new`, or `None` after a warning.
    pub(crate) fn open() -> Option<Signals> {
        Signals::new()
            .map_err(|e| crate::warn(&format!("cannot read signals: {e}")))
            .ok()
    }

    /// The next signal (its number; real-time signals included).
    pub(crate) async fn recv(&mut self) -> i32 {
        loop {
            let Ok(mut guard) = self.fd.readable_mut().await else {
                std::future::pending::<()>().await;
                continue;
            };
            // `read_signal` reports EAGAIN as `None`; turn it back into WouldBlock so that
            // tokio clears the readiness instead of waking us again at once.
            let read = guard.try_io(|fd| match fd.get_mut().read_signal() {
                Ok(Some(info)) => Ok(info.ssi_signo as i32),
                Ok(None) => Err(std::io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(std::io::Error::from(e)),
            });
            if let Ok(Ok(signo)) = read {
                return signo;
            }
        }
    }
}

/// Registers an owned pipe end with the event loop.
pub(crate) fn register_pipe(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: `OwnedFd` owns its descriptor; it stays open and refers to the same pipe until
    // the AsyncFd that now owns the OwnedFd is dropped.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
