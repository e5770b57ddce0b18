use crate::harness::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

fn dir(procfile: &str) -> Dir {
    Dir::with_procfile("roles", procfile)
}

/// The index of the first line of `out` containing `needle` (panics with the output if none).
fn at(out: &str, needle: &str) -> usize {
    out.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

/// A counter in `file`: each run of the shell snippet adds one and leaves `$n`.
fn count(file: &str) -> String {
    format!("n=$(($(cat {file} 2>/dev/null || echo 0)+1)); echo $n > {file}")
}

both_modes!(
    restarts_never_leave_a_zombie,
    a_crash_loop_ends_the_run_with_its_code,
);

#[test]
fn a_release_type_runs_first_to_completion_then_the_rest_starts() {
    let d = dir(
        "web: echo serving; exec sleep 30\nrelease: echo migrating; sleep 0.2; echo migrated\n",
    );
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("serving", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(at(&out, "release.1 | migrated") < at(&out, "release.1 stopped (rc=0)"));
    assert!(
        at(&out, "release.1 stopped (rc=0)") < at(&out, "web.1 started"),
        "{out}"
    );
    // The release phase is not the end of the run (honcho stopped web here and exited 0):
    // web is stopped by the test's signal only.
    assert!(
        at(&out, "SIGTERM received") < at(&out, "sending SIGTERM to web.1"),
        "{out}"
    );
}

#[test]
fn a_failing_release_starts_nothing_else_and_gives_its_code() {
    let d = dir("web: touch started; exec sleep 30\nrelease: echo migrating; exit 3\n");
    let (code, out, _) = procrun(d.path(), &["start"]).run();
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("release phase failed: release.1 exited with 3; nothing else starts"),
        "{out}"
    );
    assert!(!out.contains("web.1 started"), "{out}");
    assert!(!d.path().join("started").exists());
    // --before '' turns the default off: release is an ordinary process again.
    let (code, out, _) = procrun(d.path(), &["start", "--before", ""]).run();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("web.1 started"), "{out}");
}

#[test]
fn several_before_types_run_one_after_another_in_the_order_given() {
    let d = dir(
        "web: echo serving; exec sleep 30\nassets: echo assets; sleep 0.1\nmigrate: echo migrate\n",
    );
    let r = procrun(d.path(), &["start", "--before", "migrate,assets"]).spawn();
    r.wait_for("serving", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        at(&out, "migrate.1 stopped (rc=0)") < at(&out, "assets.1 started"),
        "{out}"
    );
    assert!(
        at(&out, "assets.1 stopped (rc=0)") < at(&out, "web.1 started"),
        "{out}"
    );
}

#[test]
fn a_signal_during_the_release_phase_stops_it_like_any_run() {
    let d = dir("web: touch started; exec sleep 30\nrelease: echo migrating; exec sleep 30\n");
    let r = procrun(d.path(), &["start"]).spawn();
    r.wait_for("migrating", T);
    r.signal(Signal::SIGINT);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("release.1 stopped (rc=-15)"), "{out}");
    assert!(!d.path().join("started").exists(), "{out}");
}

#[test]
fn a_can_die_one_shot_leaves_the_server_running() {
    let d = dir(
        "once: echo once ran; exit 1\nweb: trap 'echo web got USR1' USR1; echo web ready; while :; do sleep 0.1; done\n",
    );
    let r = procrun(d.path(), &["start", "--can-die", "once"]).spawn();
    r.wait_for("once.1 stopped (rc=1)", T);
    r.wait_for("web ready", T);
    // Still running and supervised: a forwarded signal reaches it.
    r.signal(Signal::SIGUSR1);
    r.wait_for("web got USR1", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        at(&out, "SIGTERM received") < at(&out, "sending SIGTERM to web.1"),
        "{out}"
    );
}

#[test]
fn when_every_process_may_die_the_last_stop_ends_the_run_with_0() {
    let d = dir("a: exit 4\nb: sleep 0.3; exit 5\n");
    let (code, out, _) = procrun(d.path(), &["start", "--can-die", "all"]).run();
    assert_eq!(code, 0, "a process that may die sets no code: {out}");
    assert!(out.contains("a.1 stopped (rc=4)") && out.contains("b.1 stopped (rc=5)"));
    assert!(!out.contains("sending SIGTERM"), "{out}");
}

#[test]
fn a_worker_that_crashes_three_times_then_stays_up_is_restarted() {
    let d = dir(&format!(
        "web: echo web ready; exec sleep 30\nworker: {}; echo attempt $n; if [ $n -le 3 ]; then exit 1; fi; echo stable; exec sleep 30\n",
        count("worker.count")
    ));
    let r = procrun(
        d.path(),
        &[
            "start",
            "--auto-restart",
            "worker",
            "--restart-delay",
            "0.05",
            "--status-addr",
            "127.0.0.1:0",
        ],
    )
    .spawn();
    r.wait_for("worker.1 | stable", T);
    let out = r.out();
    for (n, delay) in [(1, "0.05s"), (2, "0.1s"), (3, "0.2s")] {
        assert!(
            out.contains(&format!(
                "worker.1 restarting in {delay} (restart {n} of 5, rc=1)"
            )),
            "{out}"
        );
    }
    // Each restart starts after the old instance's last line and its stopped line.
    assert!(at(&out, "attempt 1") < at(&out, "restarting in 0.05s"));
    assert!(!out.contains("web.1 stopped"), "the run goes on: {out}");
    // The status endpoint counts the restarts.
    let addr = endpoint(&r).to_string();
    let (code, table, _) = procrun(d.path(), &["status", "--addr", &addr]).run();
    assert_eq!(code, 0, "{table}");
    let worker: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("worker.1"))
        .unwrap_or_else(|| panic!("{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        &worker[2..6],
        ["running", "yes", "auto-restart", "3"],
        "{table}"
    );
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
}

/// More than `--restart-limit` restarts within 60 s: stopped for good, the run ends with its
/// code (as PID 1 too).
fn a_crash_loop_ends_the_run_with_its_code(mode: Mode) {
    let d = dir("web: echo web ready; exec sleep 30\nworker: exit 7\n");
    let mut r = procrun(
        d.path(),
        &[
            "start",
            "--no-colour",
            "--auto-restart",
            "worker",
            "--restart-limit",
            "3",
            "--restart-delay",
            "0",
        ],
    )
    .mode(mode)
    .spawn();
    let exit = r.expect_exit(T);
    let out = r.out();
    assert_eq!(exit, Exit::Code(7), "{out}");
    for n in 1..=3 {
        assert!(
            out.contains(&format!(
                "worker.1 restarting in 0s (restart {n} of 3, rc=7)"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("worker.1 restarted 3 times within 60s: not restarting it again"),
        "{out}"
    );
    assert!(out.contains("sending SIGTERM to web.1"), "{out}");
    r.assert_no_panic();
    r.assert_clean();
}

/// 200 restarts in a row (as PID 1 and as a subreaper): every instance is reaped, none is left
/// as a zombie, and the run goes on.
fn restarts_never_leave_a_zombie(mode: Mode) {
    let d = dir(&format!(
        "web: echo web ready; exec sleep 30\nworker: {}; if [ $n -le 200 ]; then exit 0; fi; echo stable $n; exec sleep 30\n",
        count("restarts.count")
    ));
    let mut r = procrun(
        d.path(),
        &[
            "start",
            "--no-colour",
            "--auto-restart",
            "worker",
            "--restart-limit",
            "1000",
            "--restart-delay",
            "0",
        ],
    )
    .mode(mode)
    .spawn();
    r.wait_for("worker.1 | stable 201", Duration::from_secs(60));
    assert!(
        r.out().contains("(restart 200 of 1000, rc=0)"),
        "{}",
        r.out()
    );
    let zombies: Vec<ProcInfo> = descendants(r.pid)
        .into_iter()
        .filter(|p| p.state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    r.signal(Signal::SIGTERM);
    assert_eq!(r.expect_exit(T), Exit::Code(143), "{}", r.out());
    r.assert_no_panic();
    r.assert_clean();
}

#[test]
fn a_stop_signal_per_type_stops_an_nginx_like_process_gracefully() {
    // Exits on QUIT only (nginx's graceful stop); TERM would be ignored until SIGKILL.
    let d = dir(
        "nginx: trap 'echo got QUIT; exit 0' QUIT; trap '' TERM; echo nginx ready; while :; do sleep 0.1; done\nweb: echo web ready; exec sleep 30\n",
    );
    let r = procrun(
        d.path(),
        &["start", "-t", "20", "--stop-signal", "nginx=SIGQUIT"],
    )
    .spawn();
    r.wait_for("nginx ready", T);
    r.wait_for("web ready", T);
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(out.contains("sending SIGQUIT to nginx.1"), "{out}");
    assert!(out.contains("sending SIGTERM to web.1"), "{out}");
    assert!(out.contains("nginx.1 | got QUIT"), "{out}");
    assert!(out.contains("nginx.1 stopped (rc=0)"), "{out}");
    assert!(!out.contains("SIGKILL"), "{out}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
}

/// A server that starts listening on `$PORT` once the file `go` exists; on SIGTERM it says
/// whether the process whose pid is in `web.pid` was gone by then.
const LISTEN_ON_GO: &str = r#"import os, signal, socket, time
def term(*_):
    try:
        os.kill(int(open("web.pid").read()), 0)
        print("web was still there at db's TERM", flush=True)
    except ProcessLookupError:
        print("web was gone at db's TERM", flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, term)
while not os.path.exists("go"):
    time.sleep(0.02)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
print("db listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"#;

#[test]
fn after_waits_for_a_tcp_ready_dependency_and_stops_in_reverse() {
    let d = dir(&format!(
        "db: exec {} db.py\nweb: echo $$ > web.pid; trap 'echo web got TERM; sleep 0.3; exit 0' TERM; echo web ready; while :; do sleep 0.1; done\n",
        python()
    ));
    d.write("db.py", LISTEN_ON_GO);
    let port = free_port().to_string();
    let r = procrun(
        d.path(),
        &[
            "start", "-p", &port, "--ready", "db=tcp", "--after", "web=db",
        ],
    )
    .spawn();
    r.wait_for("db.1 started", T);
    // Not ready: web waits.
    assert!(
        !r.wait_out(Duration::from_millis(500), "web.1 started"),
        "{}",
        r.out()
    );
    d.write("go", "");
    r.wait_for("web ready", T);
    let out = r.out();
    assert!(
        at(&out, "db listening") < at(&out, "web.1 started"),
        "{out}"
    );
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    // Reverse order: web is stopped (and gone) before db gets its signal.
    assert!(at(&out, "sending SIGTERM to web.1") < at(&out, "| web got TERM"));
    assert!(
        at(&out, "| web got TERM") < at(&out, "sending SIGTERM to db.1"),
        "{out}"
    );
    assert!(out.contains("| web was gone at db's TERM"), "{out}");
}

/// `GET /health` on `addr`: the status code.
fn health(addr: std::net::SocketAddr) -> Option<u16> {
    get(addr, "/health").ok().map(|(code, _)| code)
}

#[test]
fn drain_turns_health_503_at_once_and_signals_the_processes_later() {
    let d = dir("web: echo web ready; exec sleep 30\n");
    let r = procrun(
        d.path(),
        &["start", "--drain", "2", "--status-addr", "127.0.0.1:0"],
    )
    .spawn();
    r.wait_for("web ready", T);
    let addr = endpoint(&r);
    assert!(wait_until(T, || health(addr) == Some(200)));
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    r.wait_for("draining: /health answers 503; stopping in 2s", T);
    assert_eq!(health(addr), Some(503));
    // The process keeps serving during the drain.
    assert!(!r.out().contains("sending SIGTERM"), "{}", r.out());
    r.wait_for("sending SIGTERM to web.1", T);
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
}

#[test]
fn a_second_signal_skips_the_rest_of_the_drain() {
    let d = dir("web: echo web ready; exec sleep 30\n");
    let r = procrun(d.path(), &["start", "--drain", "30"]).spawn();
    r.wait_for("web ready", T);
    r.signal(Signal::SIGTERM);
    let first = Instant::now();
    r.wait_for("draining", T);
    past_same_signal_window(first);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        first.elapsed() < Duration::from_secs(10),
        "{:?}",
        first.elapsed()
    );
    assert!(out.contains("sending SIGTERM to web.1"), "{out}");
}

#[test]
fn role_options_come_from_the_environment_as_a_dockerfile_sets_them() {
    let d = dir(&format!(
        "worker: {}; if [ $n -le 1 ]; then exit 1; fi; echo worker stable; exec sleep 30\nonce: exit 2\n",
        count("env.count")
    ));
    let r = procrun(d.path(), &["start"])
        .env("PROCRUN_AUTO_RESTART", "worker")
        .env("PROCRUN_RESTART_DELAY", "0")
        .env("PROCRUN_CAN_DIE", "once")
        .spawn();
    r.wait_for("worker stable", T);
    r.wait_for("once.1 stopped (rc=2)", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        out.contains("worker.1 restarting in 0s (restart 1 of 5, rc=1)"),
        "{out}"
    );
}
