// SAFETY: the constructor only calls `pthread_sigmask` and fills a `OnceLock`, neither of
// which needs Rust's runtime; it runs once, single-threaded, before `main`. It lives in the
// binary, not the library, so test executables linking the library keep their signals.
#[used]
#[unsafe(link_section = ".init_array")]
static BLOCK_SIGNALS_AT_LOAD: extern "C" fn() = procrun::signals::block_at_load;

fn main() -> std::process::ExitCode {
    // Block asynchronous signals before anything else (the constructor above normally did
    // already) so none is lost: as PID 1 an unhandled signal would be discarded.
    let mask = procrun::signals::block_all();
    let code = procrun::app::main(mask);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
