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
