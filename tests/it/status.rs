//! The status endpoint of `procrun start --status-addr` through a real HTTP client while
//! processes start, become ready and die; `procrun status`; option validation before anything
//! starts; and abuse (idle connections beyond the limit, oversized requests) that must not
//! disturb output or shutdown. Hard timeouts everywhere; everything started is killed on drop.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const WEB: &str = r#"
import http.server, os, signal, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while not os.path.exists("go"):
    time.sleep(0.02)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"web ok")
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening", flush=True)
server.serve_forever()
"#;

/// Polls `GET path` until `pred` holds (or panics after `timeout`).
fn wait_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let end = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok((code, body)) = get(addr, path) {
            if pred(code, &body) {
                return (code, body);
            }
            last = Some((code, body));
        }
        assert!(Instant::now() < end, "timed out on {path}; last: {last:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_cmd(dir: &Dir, args: &[&str], env_addr: Option<SocketAddr>) -> (i32, String, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let mut cmd = procrun(dir.path(), &all);
    if let Some(a) = env_addr {
        cmd = cmd.env("PROCRUN_STATUS_ADDR", &a.to_string());
    }
    cmd.spawn().finish(Duration::from_secs(20))
}

/// The pid of `name` in a /status document.
fn pid_of(json: &str, name: &str) -> i32 {
    let at = json.find(&format!("\"name\":\"{name}\"")).unwrap();
    let rest = &json[at..];
    let p = rest.find("\"pid\":").unwrap() + 6;
    rest[p..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn endpoint_follows_processes_through_start_ready_and_death() {
    let dir = Dir::new("status-life");
    dir.write("web.py", WEB).write(
        "Procfile",
        "web: IGNORE_TERM=1 exec python3 web.py\nworker: exec sleep 60\n",
    );
    let base = free_port().to_string();
    let r = procrun(
        dir.path(),
        &[
            "start",
            "--status-addr",
            "127.0.0.1:0",
            "--ready",
            "web=http:/health",
            "-p",
            &base,
            "-t",
            "3",
        ],
    )
    .spawn();
    let addr = endpoint(&r);
    r.wait_for("worker.1 started", Duration::from_secs(20));

    // Started, web not ready (it waits for the file `go`).
    let (code, body) = get(addr, "/health").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (503, "unhealthy: web.1 (not ready)\n")
    );
    let (code, json) = get(addr, "/status").unwrap();
    assert_eq!(code, 200);
    assert!(json.starts_with("{\"healthy\":false,"), "{json}");
    assert!(
        json.contains("\"name\":\"web.1\",\"type\":\"web\",\"pid\":"),
        "{json}"
    );
    // Running, but its readiness check has not passed yet: "starting".
    assert!(
        json.contains(&format!("\"port\":{base},\"state\":\"starting\"")),
        "{json}"
    );
    assert!(
        json.contains("\"ready\":false,\"ready_check\":\"http:/health\""),
        "{json}"
    );
    assert!(
        json.contains("\"ready\":true,\"ready_check\":null"),
        "worker: {json}"
    );
    let (code, table, err) = status_cmd(&dir, &["--addr", &addr.to_string()], None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(lines[0].ends_with("UPTIME/EXIT"), "{table}");
    let web: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(web[0], "web.1");
    assert_eq!(&web[2..4], ["starting", "no"], "{table}");
    assert_eq!(*lines.last().unwrap(), "unhealthy");

    // Ready.
    dir.write("go", "");
    r.wait_for("web.1    | listening", Duration::from_secs(20));
    let (_, body) = wait_get(addr, "/health", Duration::from_secs(20), |c, _| c == 200);
    assert_eq!(body, "ok: 2 running and ready\n");
    let (code, json, _) = status_cmd(&dir, &["--json"], Some(addr));
    assert_eq!(code, 0);
    assert!(json.starts_with("{\"healthy\":true,"), "{json}");
    assert!(
        json.contains("\"ready\":true,\"ready_check\":\"http:/health\""),
        "{json}"
    );

    // The worker dies; web ignores SIGTERM, so procrun stays up for --timeout: /health says who.
    let worker = pid_of(&json, "worker.1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let (_, body) = wait_get(addr, "/health", Duration::from_secs(20), |c, _| c == 503);
    assert!(body.contains("worker.1 (stopped, exit 137)"), "{body}");
    let (_, json) = get(addr, "/status").unwrap();
    assert!(json.contains("\"state\":\"stopped\""), "{json}");
    assert!(json.contains("\"exit_code\":137"), "{json}");
    let (code, out, _) = r.finish(Duration::from_secs(30));
    assert_eq!(code, 137, "{out}");
}

#[test]
fn tcp_readiness() {
    let dir = Dir::new("status-tcp");
    dir.write("web.py", WEB)
        .write("Procfile", "web: exec python3 web.py\n");
    let base = free_port().to_string();
    let r = procrun(
        dir.path(),
        &[
            "start",
            "--status-addr",
            "127.0.0.1:0",
            "--ready",
            "web=tcp",
            "-p",
            &base,
        ],
    )
    .spawn();
    let addr = endpoint(&r);
    r.wait_for("web.1 started", Duration::from_secs(20));
    assert_eq!(get(addr, "/health").unwrap().0, 503);
    dir.write("go", "");
    wait_get(addr, "/health", Duration::from_secs(20), |c, _| c == 200);
    r.signal(Signal::SIGTERM);
    assert_eq!(r.finish(Duration::from_secs(20)).0, 143);
}

#[test]
fn bad_options_fail_before_anything_starts() {
    let dir = Dir::new("status-bad");
    dir.write("Procfile", "web: touch started; sleep 60\n");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--status-addr", "nonsense"],
            "invalid address: 'nonsense'",
        ),
        (&["--status-addr", "127.0.0.1:99999"], "invalid address"),
        (
            &["--status-addr", &taken],
            "cannot serve the status endpoint",
        ),
        (
            &["--status-addr", "0", "--ready", "web=udp"],
            "invalid readiness check",
        ),
        (
            &["--status-addr", "0", "--ready", "nope=tcp"],
            "invalid readiness check",
        ),
        (&["--ready", "web=http:health"], "invalid readiness check"),
    ];
    for (args, want) in cases {
        let mut all = vec!["start"];
        all.extend_from_slice(args);
        let (code, out, err) = procrun(dir.path(), &all)
            .spawn()
            .finish(Duration::from_secs(20));
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(
            !dir.path().join("started").exists(),
            "{args:?} started a process"
        );
    }
}

#[test]
fn status_command_without_an_endpoint() {
    let dir = Dir::new("status-none");
    let addr = format!("127.0.0.1:{}", free_port());
    let (code, out, err) = status_cmd(&dir, &["--addr", &addr], None);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.contains("cannot reach procrun's status endpoint"),
        "{err}"
    );
    let (code, _, err) = status_cmd(&dir, &["--addr", "x y"], None);
    assert_eq!(code, 1);
    assert!(err.contains("invalid address"), "{err}");
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The highest `tick N` printed so far.
fn last_tick(out: &str) -> u64 {
    out.lines()
        .filter_map(|l| l.rsplit_once("| tick ").and_then(|(_, n)| n.parse().ok()))
        .max()
        .unwrap_or(0)
}

#[test]
fn slow_and_oversized_clients_disturb_neither_output_nor_shutdown() {
    let dir = Dir::new("status-abuse");
    dir.write(
        "Procfile",
        "ticker: i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done\n",
    );
    let r = procrun(dir.path(), &["start", "--status-addr", "127.0.0.1:0"]).spawn();
    let addr = endpoint(&r);
    r.wait_for("| tick 1\n", Duration::from_secs(20));
    let fds_before = fd_count(r.pid);

    // 200 idle connections (slow-loris) and a few sending a partial head slowly.
    let mut idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect();
    for s in idle.iter_mut().take(5) {
        let _ = s.write_all(b"GET /status HTTP/1.1\r\nX-Slow: ");
    }
    // An oversized head: answered 431, never served, never hangs.
    let mut big = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let pad = format!("GET /status HTTP/1.1\r\nX-Pad: {}\r\n", "a".repeat(1 << 20));
    let _ = big.write_all(pad.as_bytes());
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Output keeps flowing while the connections are open; descriptors stay bounded.
    let now = last_tick(&r.out());
    r.wait_for(&format!("| tick {}\n", now + 5), Duration::from_secs(20));
    let fds = fd_count(r.pid);
    assert!(
        fds <= fds_before + 64 + 2,
        "{fds} descriptors (was {fds_before})"
    );

    // The endpoint serves (the oldest idle connections make room).
    let (code, body) = wait_get(addr, "/health", Duration::from_secs(30), |c, _| c == 200);
    assert_eq!((code, body.as_str()), (200, "ok: 1 running and ready\n"));

    // A fresh flood is open when SIGTERM comes: procrun still exits 143 promptly.
    let flood: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect();
    let sent = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(Duration::from_secs(20));
    assert_eq!(code, 143, "{out}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        sent.elapsed()
    );
    assert!(out.contains("SIGTERM received"), "{out}");
    drop((idle, flood, big));
}

/// The endpoint's connection limit (`MAX_CONNECTIONS` in src/health/endpoint.rs).
const MAX_CONNECTIONS: usize = 64;

/// Opens `n` connections to `addr`; every `partial`-th sends an unfinished head (slow-loris).
fn open_idle(addr: SocketAddr, n: usize, partial: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
            if i % partial == 0 {
                s.write_all(b"GET /status HTTP/1.1\r\nX-Slow: ").unwrap();
            }
            s
        })
        .collect()
}

/// Whether the peer has closed `s` (EOF or reset), without blocking.
fn closed_by_peer(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*s).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// One `GET /health` (no retry) and how long the answer took.
fn timed_health(addr: SocketAddr) -> (std::io::Result<(u16, String)>, Duration) {
    let t = Instant::now();
    let r = get(addr, "/health");
    (r, t.elapsed())
}

#[test]
fn a_health_check_gets_through_when_idle_clients_hold_every_connection() {
    let dir = Dir::new("status-full");
    dir.write("Procfile", "web: exec sleep 60\n");
    let r = procrun(dir.path(), &["start", "--status-addr", "127.0.0.1:0"]).spawn();
    let addr = endpoint(&r);
    wait_get(addr, "/health", Duration::from_secs(20), |c, _| c == 200);
    let fds_before = fd_count(r.pid);

    // Exactly the limit: idle (a quarter with half a head), then a health check.
    let full = open_idle(addr, MAX_CONNECTIONS, 4);
    let (answer, took) = timed_health(addr);
    assert_eq!(
        answer.unwrap(),
        (200, "ok: 1 running and ready\n".into()),
        "with {MAX_CONNECTIONS} idle connections"
    );
    // Well below the 5 s a client has for its head: it got through, not waited them out.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop(full);

    // 100 more than the limit: the oldest are closed to make room, the newest stay open.
    let n = MAX_CONNECTIONS + 100;
    let idle = open_idle(addr, n, 4);
    assert!(
        wait_until(Duration::from_secs(20), || idle[..n - MAX_CONNECTIONS]
            .iter()
            .all(closed_by_peer)),
        "the oldest connections were not closed"
    );
    let still_open = idle[n - MAX_CONNECTIONS..]
        .iter()
        .filter(|s| !closed_by_peer(s))
        .count();
    assert_eq!(
        still_open, MAX_CONNECTIONS,
        "the newest connections stay open"
    );
    let (answer, took) = timed_health(addr);
    assert_eq!(answer.unwrap().0, 200, "with {n} idle connections");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        fd_count(r.pid) <= fds_before + MAX_CONNECTIONS + 2,
        "{} descriptors (was {fds_before})",
        fd_count(r.pid)
    );

    // Clients that send a request and never read the answer hold no slot against it either.
    let deaf: Vec<TcpStream> = (0..2 * MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
            s.write_all(b"GET /status HTTP/1.1\r\n\r\n").unwrap();
            s
        })
        .collect();
    let (answer, took) = timed_health(addr);
    assert_eq!(answer.unwrap().0, 200, "with clients that never read");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop((idle, deaf));

    r.signal(Signal::SIGTERM);
    assert_eq!(r.finish(Duration::from_secs(20)).0, 143);
}

/// Sends `request` whole with a small send buffer (so the kernel cannot absorb it: procrun
/// must read it), then reads the answer to the end.
fn send_then_read(addr: SocketAddr, request: &[u8]) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(request)
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e} (got {answer:?})"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn oversized_heads_and_unread_bodies_get_their_answer_not_a_reset() {
    let dir = Dir::new("status-431");
    dir.write("Procfile", "web: exec sleep 60\n");
    let r = procrun(dir.path(), &["start", "--status-addr", "127.0.0.1:0"]).spawn();
    let addr = endpoint(&r);
    wait_get(addr, "/health", Duration::from_secs(20), |c, _| c == 200);

    // A 1 MiB header: procrun stops parsing at 8 KiB, answers 431 and reads the rest.
    let pad = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = send_then_read(addr, pad.as_bytes()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with("\r\n\r\nrequest head too large\n"),
        "{answer:?}"
    );

    // Just over the limit, complete: 431 too. Exactly at it: served.
    let sized = |len: usize| {
        let mut h = "GET /health HTTP/1.1\r\nX-Pad: ".to_string();
        h.push_str(&"a".repeat(len - h.len() - 4));
        h.push_str("\r\n\r\n");
        h
    };
    let answer = send_then_read(addr, sized(8 * 1024 + 1).as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    let answer = send_then_read(addr, sized(8 * 1024).as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");

    // A request with a 1 MiB body procrun does not want: the answer arrives intact.
    let mut post = format!(
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    )
    .into_bytes();
    post.resize(post.len() + (1 << 20), b'b');
    let answer = send_then_read(addr, &post).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer:?}");
    assert!(answer.ends_with("method not allowed\n"), "{answer:?}");

    r.signal(Signal::SIGTERM);
    assert_eq!(r.finish(Duration::from_secs(20)).0, 143);
}

#[test]
fn status_command_gives_up_at_its_timeout_when_the_lookup_hangs() {
    let test = "status_command_gives_up_at_its_timeout_when_the_lookup_hangs";
    let Some(dns) = SilentDns::start(test) else {
        return;
    };
    let dir = Dir::new("status-dns");
    let addr = "never-answered.procrun.test:9000";
    let cmd = dns.apply(procrun(
        dir.path(),
        &["status", "--addr", addr, "--timeout", "1"],
    ));
    let started = Instant::now();
    let (code, out, err) = cmd.spawn().finish(Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach procrun's status endpoint at {addr}: no answer in time"
        )),
        "{err}"
    );
    assert!(
        dns.queries() > 0,
        "the lookup never reached the silent resolver"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
}

#[test]
fn a_status_addr_whose_lookup_hangs_fails_the_start_in_time() {
    let test = "a_status_addr_whose_lookup_hangs_fails_the_start_in_time";
    let Some(dns) = SilentDns::start(test) else {
        return;
    };
    let dir = Dir::new("status-addr-dns");
    dir.write("Procfile", "web: touch started; sleep 60\n");
    let host = "never-answered.procrun.test";
    let listen = format!("{host}:9000");
    let cmd = dns.apply(procrun(dir.path(), &["start", "--status-addr", &listen]));
    let started = Instant::now();
    let (code, out, err) = cmd.spawn().finish(Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&format!(
            "cannot resolve {host} for the status endpoint: no answer from the resolver in 2 s"
        )),
        "{err}"
    );
    assert!(
        dns.queries() > 0,
        "the lookup never reached the silent resolver"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        !dir.path().join("started").exists(),
        "a process was started"
    );
}
