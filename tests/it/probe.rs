//! `procrun probe` against real local servers: answers 200 or 500, hangs, closes at once,
//! refuses, listens on a Unix socket; --expect-status/--expect-body, retries, and --watch
//! (exactly N failures, recovery, prompt exit on SIGTERM). Every run has a hard timeout and
//! everything started is killed on drop.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a test server answers the n-th request (0-based).
#[derive(Clone, Copy)]
enum Mode {
    /// `(status for the first `n` requests, then status)`.
    Status { first: u16, n: usize, then: u16 },
    /// Accepts and never answers.
    Hang,
    /// Accepts and closes at once.
    Close,
}

struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

const BODY: &str = "hello from the test server: all good";

fn answer(mut s: impl Read + Write, status: u16) {
    // Read the request head (bounded), then answer.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    assert!(head.starts_with("GET /"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\nhost: "), "{head}");
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
}

impl Server {
    fn start(mode: Mode) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Mode::Status { first, n: k, then } => {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        answer(stream, if n < k { first } else { then });
                    }
                    Mode::Hang => held.push(stream),
                    Mode::Close => drop(stream),
                }
            }
        });
        Server { port, hits }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn ok() -> Server {
        Server::start(Mode::Status {
            first: 200,
            n: 0,
            then: 200,
        })
    }
    fn failing(status: u16) -> Server {
        Server::start(Mode::Status {
            first: status,
            n: 0,
            then: status,
        })
    }
}

/// A port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn probe(args: &[&str]) -> Running {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    procrun(&std::env::temp_dir(), &all).spawn()
}

/// Runs a one-shot probe to completion (hard timeout 20 s): code and stderr.
fn probe_once(args: &[&str]) -> (i32, String) {
    let (code, out, err) = probe(args).finish(Duration::from_secs(20));
    assert_eq!(out, "", "probe writes nothing to stdout");
    (code, err)
}

#[test]
fn http_200_is_healthy() {
    let s = Server::ok();
    assert_eq!(probe_once(&[&s.url("/health")]), (0, String::new()));
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn http_500_is_unhealthy_with_a_one_line_reason() {
    let s = Server::failing(500);
    let url = s.url("/health");
    let (code, err) = probe_once(&[&url]);
    assert_eq!(code, 1);
    assert_eq!(err, format!("procrun: probe: {url}: status 500\n"));
}

#[test]
fn redirects_are_healthy_by_default_and_expect_status_narrows() {
    let s = Server::failing(302);
    assert_eq!(probe_once(&[&s.url("/")]).0, 0);
    let (code, err) = probe_once(&["--expect-status", "200-299", &s.url("/")]);
    assert_eq!(code, 1);
    assert!(err.ends_with(": status 302\n"), "{err}");
    let s = Server::failing(503);
    assert_eq!(
        probe_once(&["--expect-status", "200,503", &s.url("/")]).0,
        0
    );
    let (code, err) = probe_once(&["--expect-status", "2xx", &s.url("/")]);
    assert_eq!(code, 2, "a bad --expect-status is a usage error: {err}");
}

#[test]
fn expect_body() {
    let s = Server::ok();
    assert_eq!(
        probe_once(&["--expect-body", "all good", &s.url("/")]),
        (0, String::new())
    );
    let (code, err) = probe_once(&["--expect-body", "all bad", &s.url("/")]);
    assert_eq!(code, 1);
    assert!(
        err.ends_with("status 200, body does not contain \"all bad\"\n"),
        "{err}"
    );
}

#[test]
fn a_hanging_server_times_out() {
    let s = Server::start(Mode::Hang);
    let started = Instant::now();
    let (code, err) = probe_once(&["--timeout", "300ms", &s.url("/")]);
    assert_eq!(code, 1);
    assert!(err.ends_with(": timed out after 300ms\n"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_that_closes_at_once_is_unhealthy() {
    let s = Server::start(Mode::Close);
    let (code, err) = probe_once(&[&s.url("/")]);
    assert_eq!(code, 1);
    // The close may race our request: either no answer at all, or a reset while sending.
    assert!(
        err.contains("connection closed without a response")
            || err.contains("send:")
            || err.contains("receive:"),
        "{err}"
    );
}

#[test]
fn tcp_targets() {
    let s = Server::ok();
    let ok = format!("tcp://127.0.0.1:{}", s.port);
    assert_eq!(probe_once(&[&ok]), (0, String::new()));
    let refused = format!("tcp://127.0.0.1:{}", closed_port());
    let (code, err) = probe_once(&[&refused]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("procrun: probe: {refused}: connect: Connection refused\n")
    );
}

#[test]
fn unix_socket_targets() {
    let dir = Dir::new("probe-unix");
    let path = dir.path().join("app.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            answer(s, 200);
        }
    });
    let plain = format!("unix:{}", path.display());
    assert_eq!(probe_once(&[&plain]), (0, String::new()));
    let http = format!("unix:{}:/health", path.display());
    assert_eq!(
        probe_once(&["--expect-body", "all good", &http]),
        (0, String::new())
    );
    let missing = format!("unix:{}", dir.path().join("nope.sock").display());
    let (code, err) = probe_once(&[&missing]);
    assert_eq!(code, 1);
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn every_target_must_be_healthy_and_each_failure_gets_its_line() {
    let good = Server::ok();
    let bad = Server::failing(500);
    let refused = format!("tcp://127.0.0.1:{}", closed_port());
    let (code, err) = probe_once(&[&good.url("/"), &bad.url("/x"), &refused]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(
        lines[0],
        format!("procrun: probe: {}: status 500", bad.url("/x"))
    );
    assert!(lines[1].starts_with(&format!("procrun: probe: {refused}: ")));
}

#[test]
fn retries() {
    // Fails twice, then healthy: two retries are enough, one is not.
    let s = Server::start(Mode::Status {
        first: 500,
        n: 2,
        then: 200,
    });
    let (code, err) = probe_once(&["--retries", "2", "--interval", "50ms", &s.url("/")]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
    let s = Server::start(Mode::Status {
        first: 500,
        n: 2,
        then: 200,
    });
    let (code, err) = probe_once(&["--retries", "1", "--interval", "50ms", &s.url("/")]);
    assert_eq!(code, 1);
    assert_eq!(
        err.lines().count(),
        1,
        "only the final reason is printed: {err}"
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_targets_are_rejected() {
    for bad in ["https://127.0.0.1:1/", "127.0.0.1:80", "http://127.0.0.1/"] {
        let (code, err) = probe_once(&[bad]);
        assert_eq!(code, 1, "{bad}");
        assert!(
            err.starts_with(&format!("procrun: probe: {bad}: ")),
            "{err}"
        );
    }
}

#[test]
fn watch_exits_after_exactly_n_consecutive_failures() {
    let s = Server::failing(500);
    let r = probe(&[
        "--watch",
        "--interval",
        "50ms",
        "--failures",
        "4",
        &s.url("/health"),
    ]);
    let (code, _, err) = r.finish(Duration::from_secs(20));
    assert_eq!(code, 1);
    let failures: Vec<&str> = err.lines().filter(|l| l.contains("(failure ")).collect();
    assert_eq!(failures.len(), 4, "{err}");
    for (i, line) in failures.iter().enumerate() {
        assert!(
            line.ends_with(&format!(": status 500 (failure {} of 4)", i + 1)),
            "{line}"
        );
        // procrun: 2026-01-02T03:04:05.678Z probe: ...
        let ts = line.strip_prefix("procrun: ").unwrap();
        assert_eq!(&ts[4..5], "-", "{line}");
        assert_eq!(&ts[23..24], "Z", "{line}");
    }
    assert!(err.contains("unhealthy 4 times in a row"), "{err}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 4);
}

#[test]
fn watch_logs_recovery_and_resets_the_count() {
    // Two failures, then healthy: never reaches --failures 3; recovery is logged once.
    let s = Server::start(Mode::Status {
        first: 500,
        n: 2,
        then: 200,
    });
    let r = probe(&[
        "--watch",
        "--interval",
        "50ms",
        "--failures",
        "3",
        &s.url("/"),
    ]);
    r.wait_for_err("healthy again", Duration::from_secs(20));
    // Keep watching for a few more healthy rounds, then stop it.
    let end = Instant::now() + Duration::from_secs(20);
    while s.hits.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < end, "watch stopped probing");
        std::thread::sleep(Duration::from_millis(10));
    }
    r.signal(Signal::SIGTERM);
    let (code, _, err) = r.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("(failure ").count(), 2, "{err}");
    assert_eq!(err.matches("healthy again").count(), 1, "{err}");
}

#[test]
fn watch_stops_promptly_on_sigterm_and_sigint() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let refused = format!("tcp://127.0.0.1:{}", closed_port());
        let r = probe(&["--watch", "--interval", "60s", &refused]);
        r.wait_for_err("(failure 1 of 3)", Duration::from_secs(20));
        let sent = Instant::now();
        r.signal(sig);
        let (code, _, err) = r.finish(Duration::from_secs(10));
        assert_eq!(code, 0, "{sig}: {err}");
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{sig} took {:?}",
            sent.elapsed()
        );
    }
}

#[test]
fn one_shot_is_interruptible_during_retries() {
    let s = Server::failing(500);
    let r = probe(&["--retries", "1000", "--interval", "60s", &s.url("/")]);
    // After the first attempt it pauses for a minute; SIGTERM ends it at once.
    let end = Instant::now() + Duration::from_secs(20);
    while s.hits.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < end, "no attempt");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, _, _) = r.finish(Duration::from_secs(10));
    assert_eq!(code, 143);
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

/// A name only the silent resolver is asked about (not in /etc/hosts).
const SILENT: &str = "never-answered.procrun.test";

/// `procrun probe ARGS` whose name lookups go to `dns`.
fn probe_with(dns: &SilentDns, args: &[&str]) -> Running {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    dns.apply(procrun(&std::env::temp_dir(), &all)).spawn()
}

/// Waits until the silent resolver has been asked (the lookup is under way and hangs).
fn wait_query(dns: &SilentDns) {
    assert!(
        wait_until(Duration::from_secs(20), || dns.queries() > 0),
        "no DNS query reached the silent resolver"
    );
}

#[test]
fn a_lookup_that_never_answers_fails_only_its_target_at_the_timeout() {
    let Some(dns) =
        SilentDns::start("a_lookup_that_never_answers_fails_only_its_target_at_the_timeout")
    else {
        return;
    };
    let healthy = Server::ok();
    let silent = format!("http://{SILENT}:8080/health");
    let started = Instant::now();
    let r = probe_with(&dns, &["--timeout", "1", &silent, &healthy.url("/")]);
    let (code, out, err) = r.finish(Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    // Only the silent target fails; the healthy one, probed in the same round, passed.
    assert_eq!(
        err,
        format!("procrun: probe: {silent}: timed out after 1s\n")
    );
    assert_eq!(healthy.hits.load(Ordering::SeqCst), 1);
    assert!(
        dns.queries() > 0,
        "the lookup never reached the silent resolver"
    );
    // The resolver would keep it waiting 30 s per try: the probe's 1 s deadline ended it.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
}

#[test]
fn a_one_shot_probe_is_interruptible_while_a_lookup_hangs() {
    let Some(dns) = SilentDns::start("a_one_shot_probe_is_interruptible_while_a_lookup_hangs")
    else {
        return;
    };
    let target = format!("tcp://{SILENT}:5432");
    let r = probe_with(&dns, &["--timeout", "60s", &target]);
    wait_query(&dns);
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, _, err) = r.finish(Duration::from_secs(20));
    assert_eq!(code, 143, "{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}",
        sent.elapsed()
    );
}

#[test]
fn watch_stops_promptly_on_sigterm_while_a_lookup_hangs() {
    let Some(dns) = SilentDns::start("watch_stops_promptly_on_sigterm_while_a_lookup_hangs") else {
        return;
    };
    let healthy = Server::ok();
    let silent = format!("http://{SILENT}:8080/health");
    let r = probe_with(
        &dns,
        &[
            "--watch",
            "--interval",
            "100ms",
            "--timeout",
            "1",
            "--failures",
            "1000",
            &silent,
            &healthy.url("/"),
        ],
    );
    // Two rounds have failed on the lookup, and the healthy target was probed in both. Rounds
    // follow each other back to back (each takes the 1 s timeout, more than the interval), and
    // the resolver holds every lookup for 30 s: one hangs whenever the signal comes.
    r.wait_for_err("(failure 2 of 1000)", Duration::from_secs(20));
    assert!(healthy.hits.load(Ordering::SeqCst) >= 2);
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, _, err) = r.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}",
        sent.elapsed()
    );
    for line in err.lines() {
        assert!(
            line.contains(&format!("probe: {silent}: timed out after 1s (failure ")),
            "only the silent target may fail: {line}"
        );
    }
}

/// Threads of process `pid`.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_silent_resolver_costs_one_thread_per_name_not_one_per_round() {
    let test = "a_silent_resolver_costs_one_thread_per_name_not_one_per_round";
    let Some(dns) = SilentDns::start(test) else {
        return;
    };
    // Two targets on one name; each round gives up on the lookup after 200 ms, while the
    // resolver holds it for 30 s.
    let r = probe_with(
        &dns,
        &[
            "--watch",
            "--interval",
            "50ms",
            "--timeout",
            "200ms",
            "--failures",
            "1000",
            &format!("http://{SILENT}:8080/health"),
            &format!("tcp://{SILENT}:5432"),
        ],
    );
    r.wait_for_err("(failure 10 of 1000)", Duration::from_secs(30));
    // The event loop's thread and the one lookup still running (20 without sharing it).
    let n = threads(r.pid);
    assert!(n <= 2, "{n} threads after 10 rounds");
    r.signal(Signal::SIGTERM);
    let (code, _, err) = r.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{err}");
}
