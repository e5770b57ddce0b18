use crate::harness::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// The lines of `out` without timestamps.
fn lines(out: &str) -> Vec<String> {
    normalise(out, std::path::Path::new("/nonexistent"))
        .lines()
        .map(|l| l.trim_start_matches("HH:MM:SS ").to_string())
        .collect()
}

fn dir(procfile: &str) -> Dir {
    Dir::with_procfile("start", procfile)
}

#[test]
fn sigterm_stops_everything_with_143() {
    let d = dir(
        "web: trap 'echo web got TERM; exit 0' TERM; echo web ready; while :; do sleep 1 & wait; done\nworker: echo worker ready; exec sleep 30\n",
    );
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("web ready", T);
    r.wait_for("worker ready", T);
    r.signal(Signal::SIGTERM);
    let start = Instant::now();
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let l = lines(&out);
    assert!(
        l.contains(&"system   | SIGTERM received".to_string()),
        "{out}"
    );
    assert!(l.contains(&"web.1    | web got TERM".to_string()), "{out}");
    assert!(
        l.contains(&"system   | web.1 stopped (rc=0)".to_string()),
        "{out}"
    );
    assert!(
        l.contains(&"system   | worker.1 stopped (rc=-15)".to_string()),
        "{out}"
    );
    assert_eq!(out.matches("sending SIGTERM").count(), 2, "{out}");
}

#[test]
fn sigint_gives_130() {
    let d = dir("web: echo ready; exec sleep 30\n");
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("ready", T);
    r.signal(Signal::SIGINT);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("SIGINT received"), "{out}");
}

#[test]
fn child_ignoring_sigterm_is_killed_after_timeout() {
    let d = dir("web: trap '' TERM; echo ready; while :; do sleep 1; done\n");
    let r = procrun(d.path(), &["start", "-t", "0.5"]).spawn();
    r.wait_for("ready", T);
    let start = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    let took = start.elapsed();
    assert_eq!(code, 143, "{out}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500 + 1000),
        "took {took:?}"
    );
    assert_eq!(out.matches("sending SIGKILL to web.1").count(), 1, "{out}");
    assert!(out.contains("web.1 stopped (rc=-9)"), "{out}");
}

/// `a` exits only once `b` has set its trap (a marker file written after `trap`), so `b` is
/// sure to ignore the SIGTERM that `a`'s exit brings and must get SIGKILL.
#[test]
fn escalation_also_after_a_process_exit() {
    let d = dir(
        "a: while [ ! -e b.trapped ]; do sleep 0.01; done; echo a-ready; exit 3\nb: trap '' TERM; touch b.trapped; echo b-ready; while :; do sleep 1; done\n",
    );
    let (code, out, _) = procrun(d.path(), &["start", "-t", "0.5"]).run();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("sending SIGKILL to b.1"), "{out}");
}

#[test]
fn second_signal_during_grace_kills_at_once() {
    let d = dir("web: trap '' TERM INT; echo ready; while :; do sleep 1; done\n");
    let r = procrun(d.path(), &["start", "-t", "30"]).spawn();
    r.wait_for("ready", T);
    r.signal(Signal::SIGTERM);
    r.wait_for("sending SIGTERM to web.1", T);
    let start = Instant::now();
    r.signal(Signal::SIGINT);
    let (code, out, _) = r.finish(T);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(code, 130, "the last signal sets the code: {out}");
    assert!(out.contains("sending SIGKILL to web.1"), "{out}");
}

#[test]
fn child_killed_by_signal_gives_128_plus_n() {
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("SEGV", 139)] {
        let d = dir(&format!(
            "web: sleep 0.1; kill -{sig} $$\nother: exec sleep 30\n"
        ));
        let (got, out, _) = procrun(d.path(), &["start"]).run();
        assert_eq!(got, code, "{sig}: {out}");
    }
}

#[test]
fn exit_codes_pass_through() {
    for n in [0, 1, 2, 42, 126, 127, 255] {
        let d = dir(&format!("web: exit {n}\n"));
        assert_eq!(procrun(d.path(), &["start"]).run().0, n);
    }
    let d = dir("web: /no/such/command\n");
    assert_eq!(procrun(d.path(), &["start"]).run().0, 127);
}

#[test]
fn usr1_is_forwarded_and_the_run_goes_on() {
    let d = dir("web: trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.1; done\n");
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("ready", T);
    r.signal(Signal::SIGUSR1);
    r.wait_for("got USR1", T);
    r.signal(Signal::SIGTERM);
    assert_eq!(r.finish(T).0, 143);
}

#[test]
fn empty_procfile_exits_0_silently() {
    let d = dir("# nothing\n");
    assert_eq!(
        procrun(d.path(), &["start"]).run(),
        (0, String::new(), String::new())
    );
    let d = dir("web: a\n");
    assert_eq!(procrun(d.path(), &["start", "-c", "web=0"]).run().0, 0);
}

#[test]
fn children_get_the_inherited_signal_mask_not_procruns() {
    let d = dir("web: grep -E '^Sig(Blk|Ign)' /proc/self/status\n");
    let (_, out, _) = procrun(d.path(), &["start", "--no-prefix"]).run();
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    let sigign = |out: &str| {
        let hex = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .expect(out);
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    const PIPE: u64 = 1 << (libc::SIGPIPE - 1);
    assert_eq!(sigign(&out) & PIPE, 0, "SIGPIPE is default again: {out}");
    // Started with SIGPIPE ignored, procrun hands that on (as tini does).
    let (_, out, _) = procrun(d.path(), &["start", "--no-prefix"])
        .ignore(&[libc::SIGPIPE])
        .run();
    assert_eq!(sigign(&out) & PIPE, PIPE, "{out}");
}

/// A stopped child (SIGSTOP, Ctrl-Z) is continued after SIGTERM so it can act on it.
/// (Spec T34.)
///
/// The shell forks its only child before it prints `ready` and then just waits: a SIGSTOP that
/// hit dash inside vfork(2) would leave it in uninterruptible vfork wait ('D', not 'T') behind a
/// stopped child, and the group would never be all stopped. The group is stopped only once the
/// child has exec'd `sleep`: until then it runs dash's code with the TERM trap it inherited, and
/// a SIGTERM it received would be swallowed by that trap and lost.
#[test]
fn stopped_child_is_continued_after_sigterm() {
    let d = dir("web: trap 'echo got TERM; exit 0' TERM; sleep 1000 & echo ready; wait\n");
    let r = procrun(d.path(), &["start", "-t", "20"]).spawn();
    r.wait_for("ready", T);
    let pid = r.pid_of("web.1");
    let group = || -> Vec<ProcInfo> { all_procs().into_iter().filter(|p| p.pgid == pid).collect() };
    assert!(
        wait_until(T, || group().iter().any(|p| p.comm == "sleep")),
        "the background job never exec'd sleep:\n{}",
        describe(r.pid)
    );
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    // Wait until every process of the group is really stopped.
    assert!(
        wait_until(T, || {
            let g = group();
            g.len() == 2 && g.iter().all(|p| p.state == 'T')
        }),
        "child never stopped:\n{}",
        describe(r.pid)
    );
    let start = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(out.contains("got TERM"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited for the grace: {:?}",
        start.elapsed()
    );
}

/// A web process that needs half a second to stop gracefully (it prints `web ready` after its
/// trap is set).
const GRACEFUL: &str = "web: trap 'echo web got TERM; sleep 0.5; echo web done; exit 0' TERM; echo web ready; while :; do sleep 0.1; done\n";

/// Asserts one graceful stop: one SIGTERM counted, no SIGKILL, the child finished its cleanup.
fn assert_one_graceful_stop(code: i32, out: &str) {
    assert_eq!(code, 143, "{out}");
    assert_eq!(out.matches("SIGTERM received").count(), 1, "{out}");
    assert!(!out.contains("SIGKILL"), "{out}");
    assert!(out.contains("web done"), "{out}");
    assert!(out.contains("web.1 stopped (rc=0)"), "{out}");
}

/// The same signal twice within 100 ms (a script or systemd signalling procrun and its group)
/// is one signal: the child gets its grace, not an immediate SIGKILL.
#[test]
fn the_same_signal_twice_at_once_counts_once() {
    let d = dir(GRACEFUL);
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("web ready", T);
    r.signal(Signal::SIGTERM);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_one_graceful_stop(code, &out);
}

/// GNU `timeout` sends its SIGTERM to the command and then to the whole process group,
/// microseconds apart: still one signal.
#[test]
fn gnu_timeout_stops_procrun_gracefully() {
    let d = dir(GRACEFUL);
    // A SIGTERM to `timeout` takes the same path as its own deadline (to the command, then to
    // the group); it is sent once the child has set its trap, so the deadline never fires.
    let r = Launch::shell(
        d.path(),
        &format!("exec timeout --preserve-status 600 {BIN} start"),
    )
    .spawn();
    r.wait_for("web ready", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_one_graceful_stop(code, &out);
}

/// procrun killed with SIGKILL (or dying of any signal it cannot handle): every child gets
/// SIGTERM as its parent-death signal and does not outlive it.
#[test]
fn children_do_not_outlive_a_sigkilled_procrun() {
    let d = dir("web: echo web ready; exec sleep 60\nworker: echo worker ready; exec sleep 60\n");
    let mut r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("web ready", T);
    r.wait_for("worker ready", T);
    let kids = [r.pid_of("web.1"), r.pid_of("worker.1")];
    r.signal(Signal::SIGKILL);
    assert_eq!(r.expect_exit(T), Exit::Signal(libc::SIGKILL));
    let gone = |pid: i32| proc_info(pid).is_none_or(|p| p.state == 'Z');
    assert!(
        wait_until(T, || kids.iter().all(|&p| gone(p))),
        "still running after procrun's SIGKILL: {:?}",
        kids.iter()
            .filter_map(|&p| proc_info(p))
            .collect::<Vec<_>>()
    );
}

/// A process whose program cannot be exec'd says why before its stopped line (here `/bin/sh`
/// is not executable, in a private mount namespace).
#[test]
fn an_exec_failure_is_reported_with_its_reason() {
    if skip_without_ns("start::an_exec_failure_is_reported_with_its_reason") {
        return;
    }
    let d = dir("web: echo never\n");
    let (code, out, _) = procrun(d.path(), &["start", "--no-colour"])
        .sh("/dev/null")
        .run();
    assert_eq!(code, 126, "{out}");
    let l = lines(&out);
    let reason = l
        .iter()
        .position(|x| x == "system | web.1: cannot exec /bin/sh: Permission denied")
        .unwrap_or_else(|| panic!("{out}"));
    let stopped = l
        .iter()
        .position(|x| x == "system | web.1 stopped (rc=126)")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(reason < stopped, "{out}");
}

/// Out of descriptors half-way through the start (`ulimit -n 32`, 26 processes): procrun says
/// so naming the process it could not start, stops and reaps the ones it started, and exits 1.
#[test]
fn running_out_of_descriptors_reports_the_cause_and_leaves_nothing() {
    let procfile: String = (1..=26)
        .map(|i| format!("w{i}: echo w{i} up; exec sleep 60\n"))
        .collect();
    let d = dir(&procfile);
    let mut r = Launch::shell(d.path(), &format!("ulimit -n 32; exec {BIN} start")).spawn();
    let exit = r.expect_exit(T);
    let out = r.out();
    assert_eq!(exit, Exit::Code(1), "{out}\n{}", r.err());
    let failed: Vec<&str> = out.lines().filter(|l| l.contains("cannot start")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(failed[0].ends_with(": Too many open files"), "{out}");
    assert!(out.contains("sending SIGTERM to w1.1"), "{out}");
    r.assert_no_panic();
    r.assert_clean();
}

/// README's quick start: the bundled example runs as the README describes (the worker's five
/// jobs, then procrun stops the others and exits with the worker's code).
#[test]
fn the_readme_example_runs_as_described() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = procrun(
        root,
        &["-f", "example/Procfile", "-e", "example/app.env", "start"],
    )
    .run();
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "web.1    | serving on port 5000 (hello from example/app.env)",
        "worker.1 | processed job 5",
        "worker.1 | queue empty, exiting",
        "system   | worker.1 stopped (rc=0)",
        "clock.1  | got SIGTERM, saving state",
        "system   | clock.1 stopped (rc=0)",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}
