//! The single-threaded tokio runtime every event loop of procrun runs on.

use std::future::Future;

/// The runtime, or `None` after a warning if it cannot be built (e.g. out of descriptors).
fn new() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            crate::warn(&format!("cannot start the event loop: {e}"));
            None
        }
    }
}

/// Runs a command's event loop (local tasks allowed) to completion and returns its result;
/// `on_error` if the runtime cannot be built. Blocking helper threads still running (a name
/// lookup that never answers) are left behind instead of waited for.
pub(crate) fn block_on_local<T>(main: impl Future<Output = T>, on_error: T) -> T {
    match new() {
        Some(rt) => {
            let out = tokio::task::LocalSet::new().block_on(&rt, main);
            rt.shutdown_background();
            out
        }
        None => on_error,
    }
}
