use crate::harness::*;
use libc::{SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

fn dir(procfile: &str) -> Dir {
    Dir::with_procfile("run", procfile)
}

both_modes!(
    exit_codes_pass_through,
    signals_are_forwarded,
    every_catchable_signal_is_forwarded,
    orphans_are_reaped,
);

#[test]
fn env_and_exit_code_pass_through() {
    let d = dir("");
    d.write(".env", "A='x y'\n");
    let (code, out, _) = procrun(d.path(), &["run", "sh", "-c", "echo \"A=$A\"; exit 7"]).run();
    assert_eq!((code, out.as_str()), (7, "A=x y\n"));
    let (code, _, _) = procrun(d.path(), &["run", "--", "sh", "-c", "kill -TERM $$"]).run();
    assert_eq!(code, 143);
    let r = procrun(
        d.path(),
        &[
            "run",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    )
    .spawn();
    r.wait_for("ready", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("got TERM"));
}

/// `run`: leftovers of the command get SIGTERM when it exits, SIGKILL after `--timeout`.
#[test]
fn leftovers_get_sigterm_then_sigkill_and_the_code_is_the_commands() {
    let d = dir("");
    let start = Instant::now();
    let (code, _, _) = procrun(
        d.path(),
        &["run", "-t", "0.5", "sh", "-c", "sleep 30 & exit 3"],
    )
    .run();
    assert_eq!(code, 3);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    // The command exits only once its background job ignores SIGTERM (a marker written after
    // the trap), so the job must be killed with SIGKILL at the end of the grace.
    let (code, _, _) = procrun(
        d.path(),
        &[
            "run",
            "-t",
            "0.5",
            "sh",
            "-c",
            "(trap '' TERM; touch trapped; exec sleep 30) & while [ ! -e trapped ]; do sleep 0.01; done; exit 4",
        ],
    )
    .run();
    assert_eq!(code, 4);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// Exit codes and signal deaths of the command come out as a shell reports them.
fn exit_codes_pass_through(mode: Mode) {
    let s = Dir::new("runcodes");
    for (cmd, want) in [
        ("exit 7", 7),
        ("exit 0", 0),
        ("kill -KILL $$", 137),
        ("kill -USR1 $$", 138),
    ] {
        let mut r = procrun(s.path(), &["run", "--", "sh", "-c", cmd])
            .mode(mode)
            .spawn();
        assert_eq!(r.expect_exit(T), Exit::Code(want), "`{cmd}`: {}", r.err());
        r.assert_no_panic();
        r.assert_clean();
    }
}

/// USR1, USR2 and WINCH reach the command; SIGTERM too, and its own exit code is passed on.
fn signals_are_forwarded(mode: Mode) {
    let s = Dir::new("runfwd");
    let rec = s.recorder("r", 0.1);
    let argv: Vec<&str> = rec.split(' ').collect();
    let mut args = vec!["run", "--"];
    args.extend(argv);
    let mut r = procrun(s.path(), &args).mode(mode).spawn();
    ready_or_panic(&s, &r, &["r"]);
    for (sig, name) in [(SIGUSR1, "USR1"), (SIGUSR2, "USR2"), (SIGWINCH, "WINCH")] {
        r.signal(sig);
        assert!(
            wait_until(T, || s.count("r", &format!("got {name}")) == 1),
            "{name} not forwarded: {}",
            s.read("r")
        );
    }
    r.signal(SIGTERM);
    let exit = r.expect_exit(T);
    assert_eq!(s.count("r", "got TERM"), 1, "{}", s.read("r"));
    assert_eq!(s.count("r", "clean exit"), 1, "{}", s.read("r"));
    // The recorder exits 0 after its cleanup: `run` passes the child's code through.
    assert_eq!(exit, Exit::Code(0), "{}", r.err());
    r.assert_clean();
}

/// Orphans the command leaves behind are reaped while it runs.
fn orphans_are_reaped(mode: Mode) {
    let s = Dir::new("runreap");
    let cmd = format!(
        "for i in $(seq 20); do (sleep 0.2 &); done; echo ready >> {}; exec sleep 100",
        s.file("m").display()
    );
    let mut r = procrun(s.path(), &["run", "--", "sh", "-c", &cmd])
        .mode(mode)
        .spawn();
    ready_or_panic(&s, &r, &["m"]);
    // procrun -> sh -c "sh -c '...'" (or the exec'd sleep directly): 1 or 2 managed processes.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let d = descendants(r.pid);
            d.iter().all(|p| p.state != 'Z') && d.iter().filter(|p| p.comm == "sleep").count() == 1
        }),
        "orphans not reaped:\n{}",
        describe(r.pid)
    );
    r.signal(SIGTERM);
    assert_eq!(r.expect_exit(T), Exit::Code(143), "{}", r.err());
    r.assert_clean();
}

/// Records every signal named on its command line, by name, in the file given first; exits 0
/// on SIGTERM.
const EVERY_SIGNAL: &str = r#"
import os, signal, sys
f = sys.argv[1]
handled = [getattr(signal, name) for name in sys.argv[2].split(",")]
def log(s):
    fd = os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (s + "\n").encode())
    os.close(fd)
# Taken one at a time (blocked, then waited for), so each is logged before the next.
signal.pthread_sigmask(signal.SIG_BLOCK, handled)
log("ready")
while True:
    sig = signal.sigwaitinfo(handled).si_signo
    log("got " + signal.Signals(sig).name)
    if sig == signal.SIGTERM:
        os._exit(0)
"#;

/// Every catchable signal procrun gets is forwarded to the command, one by one (SIGPIPE
/// included, as tini and dumb-init do); SIGTERM last, which the command exits on.
fn every_catchable_signal_is_forwarded(mode: Mode) {
    let names = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGCONT",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGTERM",
    ];
    let s = Dir::new("runall");
    s.write("rec.py", EVERY_SIGNAL);
    let script = s.file("rec.py").display().to_string();
    let log = s.file("r").display().to_string();
    let list = names.join(",");
    let mut r = procrun(
        s.path(),
        &["run", "--", python(), "-I", "-S", &script, &log, &list],
    )
    .mode(mode)
    .spawn();
    ready_or_panic(&s, &r, &["r"]);
    for name in names {
        let signo: Signal = name.parse().unwrap();
        r.signal(signo);
        assert!(
            wait_until(T, || s.count("r", &format!("got {name}")) == 1),
            "{name} not forwarded: {}",
            s.read("r")
        );
    }
    assert_eq!(r.expect_exit(T), Exit::Code(0), "{}", r.err());
    r.assert_clean();
}

/// `run` execs the command itself: it needs no `/bin/sh` (here not executable, in a private
/// mount namespace), and a command that cannot be exec'd is a message and 126 or 127.
#[test]
fn run_needs_no_shell_and_says_why_an_exec_failed() {
    let d = dir("");
    let (code, _, err) = procrun(d.path(), &["run", "--", "/nonexistent/app"]).run();
    assert_eq!(code, 127, "{err}");
    assert_eq!(
        err,
        "procrun: cannot exec /nonexistent/app: No such file or directory\n"
    );
    let (code, _, err) = procrun(d.path(), &["run", "no-such-program-here"]).run();
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("cannot exec no-such-program-here: No such file"),
        "{err}"
    );
    if skip_without_ns("run::run_needs_no_shell_and_says_why_an_exec_failed") {
        return;
    }
    let (code, out, err) = procrun(d.path(), &["run", "--", "echo", "no shell"])
        .sh("/dev/null")
        .run();
    assert_eq!((code, out.as_str()), (0, "no shell\n"), "{err}");
    // A single argument with shell syntax still goes through /bin/sh.
    let (code, _, err) = procrun(d.path(), &["run", "echo a && echo b"])
        .sh("/dev/null")
        .run();
    assert_eq!(code, 126, "{err}");
    assert!(
        err.contains("cannot exec /bin/sh: Permission denied"),
        "{err}"
    );
}
