fn main() -> std::process::ExitCode {
    // First statement: block asynchronous signals so none is lost (as PID 1 an unhandled
    // signal would be discarded) before the event loop reads them.
    let mask = procrun::signals::block_all();
    let code = procrun::app::main(mask);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
