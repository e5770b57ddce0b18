//! The status endpoint of `procrun start --status-addr`: `GET /health` (200 when every process
//! runs and is ready, else 503 with the reasons) and `GET /status` (JSON, or a table with
//! `?format=text`, which `procrun status` prints).
//!
//! It runs as local tasks on the supervisor's current-thread runtime and only reads the board,
//! so it cannot hold up supervision. Its resources are bounded: each connection gets
//! `HEAD_LIMIT` bytes and `IO_TIMEOUT` to send its request and again to take the answer, and
//! at most `MAX_CONNECTIONS` are open at once. When a new connection finds them all taken, the
//! oldest one is closed to make room, so idle or slow clients can delay a health check by no
//! more than the time it takes to open `MAX_CONNECTIONS` newer connections, never lock it out.
//! (A deadline alone would let a client that reconnects as fast as it is closed keep every slot;
//! a reserve would be taken by the same idle clients, as the endpoint cannot tell a health check
//! from an idle client before it has read the request.) Accept errors (such as running out of
//! descriptors) back off instead of spinning. A connection is closed gracefully: the answer, a
//! FIN, then whatever the client still sends is read and dropped (bounded by `LINGER` and
//! `LINGER_LIMIT`) until it closes, because closing a socket with unread data resets the
//! connection, and the reset can destroy the answer before the client has read it (a `431` to a
//! client still sending its oversized head, above all).

use crate::error::Error;
use crate::net::addr::HostPort;
use crate::net::http::{self, BadRequest};
use crate::supervise::board::{Board, Entry};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::AbortHandle;

/// Longest request head accepted.
const HEAD_LIMIT: usize = 8 * 1024;
/// Time a client has to send its request head, and again to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to resolve a host name given to `--status-addr`.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections open at once; a new one beyond this closes the oldest.
const MAX_CONNECTIONS: usize = 64;
/// After the answer, how long the client has to close its side while what it still sends
/// is read and dropped.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and dropped after the answer (then the connection is closed anyway).
const LINGER_LIMIT: usize = 4 << 20;

/// Binds the endpoint's listener (before anything is started, so a taken port is an error
/// of the configuration) and says where it listens.
pub(crate) fn bind(listen: &HostPort) -> Result<std::net::TcpListener, Error> {
    let sockaddr = listen_addr(listen).map_err(|e| Error::Io {
        context: format!("cannot resolve {} for the status endpoint", listen.host),
        source: e,
    })?;
    let listener = std::net::TcpListener::bind(sockaddr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Io {
            context: format!("cannot serve the status endpoint on {sockaddr}"),
            source: e,
        })?;
    let bound = listener.local_addr().unwrap_or(sockaddr);
    crate::warn(&format!(
        "status endpoint on http://{bound} (GET /health, GET /status)"
    ));
    Ok(listener)
}

/// The address to listen on: an IP address as it is, a name through the system resolver on a
/// thread of its own, given up after `RESOLVE_TIMEOUT` (the event loop does not run yet and
/// signals wait for it, so a resolver that never answers must not hold up the start).
fn listen_addr(listen: &HostPort) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = listen.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, listen.port));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (host, port) = (listen.host.clone(), listen.port);
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let first = (host.as_str(), port).to_socket_addrs().and_then(|mut a| {
                a.next()
                    .ok_or_else(|| std::io::Error::other("no address found"))
            });
            let _ = tx.send(first);
        })?;
    rx.recv_timeout(RESOLVE_TIMEOUT).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from the resolver in {} s",
                RESOLVE_TIMEOUT.as_secs()
            ),
        ))
    })
}

/// Serves the endpoint until the runtime ends (spawn it as a local task).
pub(crate) async fn serve(board: Rc<Board>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            crate::warn(&format!("cannot serve the status endpoint: {e}"));
            return;
        }
    };
    let open = Rc::new(Open::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let evicted = open.make_room(MAX_CONNECTIONS - 1);
                let id = open.next_id();
                let guard = Guard {
                    open: Rc::clone(&open),
                    id,
                };
                let task =
                    tokio::task::spawn_local(serve_connection(stream, Rc::clone(&board), guard));
                open.push(id, task.abort_handle());
                if evicted {
                    // Let the evicted task be dropped (its socket closed) before the next
                    // accept, so that descriptors stay bounded under a flood.
                    tokio::task::yield_now().await;
                }
            }
            // Out of descriptors or a transient error: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Open {
    next: Cell<u64>,
    tasks: RefCell<VecDeque<(u64, AbortHandle)>>,
}

impl Open {
    fn next_id(&self) -> u64 {
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        id
    }

    fn push(&self, id: u64, task: AbortHandle) {
        self.tasks.borrow_mut().push_back((id, task));
    }

    /// Closes the oldest connections until at most `keep` are open; says whether it did.
    fn make_room(&self, keep: usize) -> bool {
        let oldest: Vec<_> = {
            let mut tasks = self.tasks.borrow_mut();
            let excess = tasks.len().saturating_sub(keep);
            tasks.drain(..excess).collect()
        };
        // Aborted outside the borrow: a task may look at the list as it ends.
        for (_, task) in &oldest {
            task.abort();
        }
        !oldest.is_empty()
    }

    #[cfg(test)]
    fn ids(&self) -> Vec<u64> {
        self.tasks.borrow().iter().map(|(id, _)| *id).collect()
    }
}

/// Takes its connection off the list when the connection's task ends (or is dropped).
struct Guard {
    open: Rc<Open>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.open.tasks.try_borrow_mut() {
            tasks.retain(|(id, _)| *id != self.id);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    TooLarge,
    Invalid,
    Closed,
}

/// Reads a request head of at most `HEAD_LIMIT` bytes. It is parsed when its first line is
/// in (to refuse garbage at once), when a blank line may have ended it, and at the limit:
/// never once per read, which a client sending a byte at a time would make quadratic.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<http::Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let mut first_line_seen = false;
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let scan_from = buf.len().saturating_sub(2);
        buf.extend_from_slice(&chunk[..n]);
        let first_line = !first_line_seen && chunk[..n].contains(&b'\n');
        first_line_seen |= first_line;
        if !(first_line || http::has_blank_line(&buf[scan_from..]) || buf.len() > HEAD_LIMIT) {
            continue;
        }
        match http::parse_request(&buf) {
            Ok(Some((_, len))) if len > HEAD_LIMIT => return Err(ReadError::TooLarge),
            Ok(Some((request, _))) => return Ok(request),
            Ok(None) if buf.len() > HEAD_LIMIT => return Err(ReadError::TooLarge),
            Ok(None) => {}
            Err(BadRequest::TooManyHeaders) => return Err(ReadError::TooLarge),
            Err(BadRequest::Invalid) => return Err(ReadError::Invalid),
        }
    }
}

async fn serve_connection(mut stream: tokio::net::TcpStream, board: Rc<Board>, _guard: Guard) {
    let answer = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => route(&request, &board),
        Ok(Err(ReadError::TooLarge)) => {
            http::response(431, "text/plain", b"request head too large\n", false, "")
        }
        Ok(Err(ReadError::Invalid)) => {
            http::response(400, "text/plain", b"bad request\n", false, "")
        }
        Ok(Err(ReadError::Closed)) => return,
        Err(_elapsed) => http::response(408, "text/plain", b"request timeout\n", false, ""),
    };
    let sent = tokio::time::timeout(IO_TIMEOUT, stream.write_all(&answer)).await;
    drop(answer);
    if let Ok(Ok(())) = sent {
        close_gracefully(stream).await;
    }
}

/// Sends a FIN after the answer, then reads and drops what the client still sends until it
/// closes its side, at most `LINGER_LIMIT` bytes for at most `LINGER`. Closing a socket with
/// unread data would reset the connection instead, and a client still sending (an oversized
/// head, a body) would see the reset rather than the answer.
async fn close_gracefully<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let mut left = LINGER_LIMIT;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn route(request: &http::Request, board: &Board) -> Vec<u8> {
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return http::response(
            405,
            "text/plain",
            b"method not allowed\n",
            false,
            "Allow: GET, HEAD\r\n",
        );
    }
    let entries = board.entries();
    match request.path.as_str() {
        "/health" => {
            let (mut code, mut body) = health(&entries);
            if board.is_stopping() {
                code = 503;
                body = format!("stopping (procrun is shutting down); {body}");
            }
            let ctype = "text/plain; charset=utf-8";
            http::response(code, ctype, body.as_bytes(), head_only, "")
        }
        "/status" if request.param("format") == Some("text") => {
            let body = table(&entries, SystemTime::now());
            let ctype = "text/plain; charset=utf-8";
            http::response(200, ctype, body.as_bytes(), head_only, "")
        }
        "/status" => {
            let body = status_json(&entries, SystemTime::now());
            http::response(200, "application/json", body.as_bytes(), head_only, "")
        }
        _ => http::response(
            404,
            "text/plain",
            b"not found (try /health or /status)\n",
            head_only,
            "",
        ),
    }
}

/// `/health`: 200 when every process is running and ready, else 503 naming those that are not.
fn health(entries: &[Entry]) -> (u16, String) {
    if entries.is_empty() {
        return (503, "no processes\n".into());
    }
    let bad: Vec<String> = entries
        .iter()
        .filter(|e| !e.is_ready())
        .map(|e| {
            let why = match e.exit_code {
                Some(code) => format!("{}, exit {code}", e.state),
                None if e.is_alive() => "not ready".to_string(),
                None => e.state.to_string(),
            };
            format!("{} ({why})", e.name)
        })
        .collect();
    if bad.is_empty() {
        (200, format!("ok: {} running and ready\n", entries.len()))
    } else {
        (503, format!("unhealthy: {}\n", bad.join(", ")))
    }
}

fn healthy(entries: &[Entry]) -> bool {
    !entries.is_empty() && entries.iter().all(Entry::is_ready)
}

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::time::rfc3339_utc(d.as_secs() as i64, d.subsec_millis())
}

fn uptime(e: &Entry, now: SystemTime) -> Option<u64> {
    let started = e.started_at.filter(|_| e.is_alive())?;
    Some(now.duration_since(started).unwrap_or_default().as_secs())
}

/// `/status`: every process as JSON.
fn status_json(entries: &[Entry], now: SystemTime) -> String {
    use crate::text::json_str;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let procs: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"name\":{},\"type\":{},\"pid\":{},\"port\":{},\"state\":{},\"started_at\":{},\"uptime_seconds\":{},\"stopped_at\":{},\"exit_code\":{},\"ready\":{},\"ready_check\":{},\"role\":{},\"restarts\":{}}}",
                json_str(&e.name),
                json_str(&e.type_name),
                opt(e.pid.map(|p| p.to_string())),
                opt((e.port > 0).then(|| e.port.to_string())),
                json_str(e.state),
                opt(e.started_at.map(|t| json_str(&rfc3339(t)))),
                opt(uptime(e, now).map(|s| s.to_string())),
                opt(e.stopped_at.map(|t| json_str(&rfc3339(t)))),
                opt(e.exit_code.map(|c| c.to_string())),
                e.is_ready(),
                opt(e.check.as_ref().map(|c| json_str(&c.to_string()))),
                json_str(&e.role),
                e.restarts,
            )
        })
        .collect();
    format!(
        "{{\"healthy\":{},\"pid\":{},\"processes\":[{}]}}\n",
        healthy(entries),
        std::process::id(),
        procs.join(",")
    )
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

/// `/status?format=text`: the table `procrun status` prints, then `healthy` or `unhealthy`.
fn table(entries: &[Entry], now: SystemTime) -> String {
    const COLUMNS: usize = 7;
    let mut rows: Vec<[String; COLUMNS]> = vec![
        [
            "NAME",
            "PID",
            "STATE",
            "READY",
            "ROLE",
            "RESTARTS",
            "UPTIME/EXIT",
        ]
        .map(String::from),
    ];
    for e in entries {
        let ready = if e.is_ready() {
            "yes"
        } else if e.is_alive() {
            "no"
        } else {
            "-"
        };
        let last = match (uptime(e, now), e.exit_code) {
            (_, Some(code)) => format!("exit {code}"),
            (Some(up), None) => human_secs(up),
            (None, None) => "-".into(),
        };
        rows.push([
            e.name.clone(),
            e.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            e.state.into(),
            ready.into(),
            e.role.replace(' ', ""),
            e.restarts.to_string(),
            last,
        ]);
    }
    let mut widths = [0usize; COLUMNS];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(if healthy(entries) {
        "healthy\n"
    } else {
        "unhealthy\n"
    });
    out
}

/// The address `procrun status` should connect to for a listening address (an unspecified
/// address such as 0.0.0.0 means this machine).
pub(crate) fn client_addr(listen: &HostPort) -> HostPort {
    let host = match listen.host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".into(),
        Ok(ip) if ip.is_unspecified() => "::1".into(),
        _ => listen.host.clone(),
    };
    HostPort {
        host,
        port: listen.port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Instance;
    use crate::supervise::machine::{Status, View};

    fn board() -> Board {
        use crate::config::Roles;
        let inst = |name: &str, port| Instance {
            name: name.into(),
            type_name: name.split('.').next().unwrap().into(),
            command: "x".into(),
            port,
        };
        let roles = Roles {
            auto_restart: vec!["worker".into()],
            ..Roles::default()
        };
        let b = Board::new(&[inst("web.1", 5000), inst("worker.1", 5100)], &[], &roles);
        let view = |state, pid, exit| View {
            state,
            pid,
            ready: true,
            restarts: 2,
            exit,
        };
        b.publish(0, &view("running", Some(10), None));
        b.publish(1, &view("stopped", Some(11), Some(Status::Code(3))));
        b
    }

    fn get(path: &str, b: &Board) -> String {
        let head = format!("GET {path} HTTP/1.1\r\n\r\n");
        let (request, _) = http::parse_request(head.as_bytes()).unwrap().unwrap();
        String::from_utf8(route(&request, b)).unwrap()
    }

    #[test]
    fn documents() {
        let b = board();
        let (code, body) = health(&b.entries());
        assert_eq!(code, 503);
        assert_eq!(body, "unhealthy: worker.1 (stopped, exit 3)\n");
        let json = status_json(&b.entries(), SystemTime::now());
        assert!(json.starts_with("{\"healthy\":false,"), "{json}");
        assert!(
            json.contains(
                "\"name\":\"web.1\",\"type\":\"web\",\"pid\":10,\"port\":5000,\"state\":\"running\""
            ),
            "{json}"
        );
        assert!(
            json.contains("\"exit_code\":3,\"ready\":false,\"ready_check\":null"),
            "{json}"
        );
        let t = table(&b.entries(), SystemTime::now());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME      PID  STATE    READY  ROLE          RESTARTS  UPTIME/EXIT"
        );
        assert_eq!(
            lines[1],
            "web.1     10   running  yes    main          2         0s"
        );
        assert_eq!(
            lines[2],
            "worker.1  11   stopped  -      auto-restart  2         exit 3"
        );
        assert_eq!(lines[3], "unhealthy");
        assert_eq!(human_secs(3725), "1h02m");
    }

    #[test]
    fn routes() {
        let b = board();
        assert!(get("/health", &b).starts_with("HTTP/1.1 503"));
        assert!(get("/nope", &b).starts_with("HTTP/1.1 404"));
        assert!(get("/status?format=text", &b).ends_with("unhealthy\n"));
        assert!(get("/status", &b).contains("application/json"));
        let (post, _) = http::parse_request(b"POST /status HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8(route(&post, &b))
                .unwrap()
                .starts_with("HTTP/1.1 405")
        );
        let (head, _) = http::parse_request(b"HEAD /status?x HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        let r = String::from_utf8(route(&head, &b)).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        b.set_stopping();
        assert!(get("/health", &b).contains("stopping (procrun is shutting down)"));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    /// `read_request` on `pieces` written one by one (then the writer closes).
    fn read_from(pieces: Vec<Vec<u8>>) -> Result<http::Request, ReadError> {
        block_on(async move {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            tokio::task::spawn_local(async move {
                for p in pieces {
                    if client.write_all(&p).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            });
            read_request(&mut server).await
        })
    }

    #[test]
    fn request_heads() {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let bytewise: Vec<Vec<u8>> = head.iter().map(|b| vec![*b]).collect();
        assert_eq!(read_from(bytewise).unwrap().path, "/health");
        assert_eq!(read_from(vec![head.clone()]).unwrap().path, "/health");
        // Exactly at the limit: served; one byte more, complete or not: 431.
        let sized = |n: usize| {
            let mut h = b"GET /health HTTP/1.1\r\nX-Pad: ".to_vec();
            h.resize(n - 4, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        assert_eq!(sized(HEAD_LIMIT).len(), HEAD_LIMIT);
        assert!(read_from(vec![sized(HEAD_LIMIT)]).is_ok());
        assert_eq!(
            read_from(vec![sized(HEAD_LIMIT + 1)]).unwrap_err(),
            ReadError::TooLarge
        );
        let mut endless = sized(HEAD_LIMIT * 4);
        endless.truncate(endless.len() - 4);
        assert_eq!(read_from(vec![endless]).unwrap_err(), ReadError::TooLarge);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100));
        assert_eq!(
            read_from(vec![many.into_bytes()]).unwrap_err(),
            ReadError::TooLarge
        );
        // Garbage is refused on its first line, without waiting for a blank line.
        assert_eq!(
            read_from(vec![b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()]).unwrap_err(),
            ReadError::Invalid
        );
        assert_eq!(
            read_from(vec![b"GET /health HTTP/1.1\r\nHost".to_vec()]).unwrap_err(),
            ReadError::Closed
        );
    }

    #[test]
    fn the_oldest_connections_make_room() {
        block_on(async {
            let open = Open::default();
            for _ in 0..5 {
                let id = open.next_id();
                let task = tokio::task::spawn_local(std::future::pending::<()>());
                open.push(id, task.abort_handle());
            }
            assert!(!open.make_room(5));
            assert!(open.make_room(3));
            assert_eq!(open.ids(), [2, 3, 4]);
            let guard = Guard {
                open: Rc::new(Open::default()),
                id: 0,
            };
            guard
                .open
                .push(0, tokio::task::spawn_local(async {}).abort_handle());
            guard
                .open
                .push(1, tokio::task::spawn_local(async {}).abort_handle());
            let open = Rc::clone(&guard.open);
            drop(guard);
            assert_eq!(open.ids(), [1]);
        });
    }

    #[test]
    fn client_addresses() {
        let hp = |h: &str| HostPort {
            host: h.into(),
            port: 9,
        };
        assert_eq!(client_addr(&hp("0.0.0.0")).host, "127.0.0.1");
        assert_eq!(client_addr(&hp("::")).host, "::1");
        assert_eq!(client_addr(&hp("web")).host, "web");
    }
}
