//! Reading an input file (the Procfile, an env file) so that it fails closed and stays
//! interruptible.
//!
//! Only a file that does not exist (ENOENT) is "missing"; any other failure is an error. A
//! regular file is read at once. Anything else (a FIFO, a terminal, `/dev/stdin`) may block for
//! as long as its writer likes, and procrun blocks every asynchronous signal from its first
//! instruction (they are read later from a signalfd), so a blocked `read` could not be
//! interrupted: such a file is read on a helper thread while the main thread waits for either
//! the result or SIGINT/SIGTERM/SIGHUP/SIGQUIT, which ends procrun at once (nothing has been
//! started yet). Other signals stay pending for the event loop.

use crate::error::Error;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use std::path::Path;

/// The signals that end procrun while it reads its inputs.
const SHUTDOWN: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// The contents of `path` (a `what`: "Procfile", "env file"), or `None` if it does not exist.
pub(crate) fn read(path: &Path, what: &'static str) -> Result<Option<Vec<u8>>, Error> {
    let result = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(std::io::Error::from_raw_os_error(libc::EISDIR)),
        Ok(m) if m.is_file() => std::fs::read(path),
        Ok(_) => return read_interruptibly(path, what),
        Err(e) => Err(e),
    };
    outcome(path, what, result)
}

/// A read's result as [`read`] gives it: only ENOENT is "missing".
fn outcome(
    path: &Path,
    what: &'static str,
    result: std::io::Result<Vec<u8>>,
) -> Result<Option<Vec<u8>>, Error> {
    match result {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(source) => Err(Error::Unreadable {
            what,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads `path` on a helper thread; a shutdown signal meanwhile is `Error::Interrupted`.
fn read_interruptibly(path: &Path, what: &'static str) -> Result<Option<Vec<u8>>, Error> {
    let mut set = SigSet::empty();
    for s in SHUTDOWN {
        set.add(s);
    }
    let setup = || -> std::io::Result<_> {
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
        let (done_r, done_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("read-input".into())
            .spawn(move || {
                let _ = tx.send(std::fs::read(&owned));
                // Closing the write end wakes the main thread.
                drop(done_w);
            })?;
        Ok((sfd, done_r, rx))
    };
    // Without a thread (out of resources), read here: blocking, as a plain read would.
    let Ok((sfd, done_r, rx)) = setup() else {
        return outcome(path, what, std::fs::read(path));
    };
    loop {
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(done_r.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return outcome(path, what, Err(e.into())),
        }
        let signalled = fds[0].any().unwrap_or(false);
        let done = fds[1].any().unwrap_or(false);
        if signalled && let Ok(Some(info)) = sfd.read_signal() {
            return Err(Error::Interrupted {
                signal: info.ssi_signo as i32,
                path: path.to_path_buf(),
            });
        }
        if done {
            let result = rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("the reading thread failed")));
            return outcome(path, what, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_unreadable_and_special_files() {
        let dir = std::env::temp_dir().join(format!("procrun-read-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read(&dir.join("nope"), "env file").unwrap().is_none());
        let e = read(&dir, "env file").unwrap_err().to_string();
        assert!(
            e.contains("cannot read env file") && e.contains("Is a directory"),
            "{e}"
        );
        std::fs::write(dir.join("f"), "A=1\n").unwrap();
        assert_eq!(read(&dir.join("f"), "env file").unwrap().unwrap(), b"A=1\n");
        // Below a regular file: ENOTDIR, not "missing".
        assert!(read(&dir.join("f/x"), "env file").is_err());
        // A character device goes through the helper thread.
        assert_eq!(
            read(Path::new("/dev/null"), "env file").unwrap().unwrap(),
            b""
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
