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
