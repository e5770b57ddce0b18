//! The status endpoint of `procrun start --status-addr` and the `procrun status` command.
//!
//! The supervisor publishes a snapshot of its processes to the `StatusBoard` whenever one
//! changes; the board adds what the endpoint needs (type, port, start and stop times) and the
//! readiness that its pollers (`--ready`) find. Everything runs as local tasks on the
//! supervisor's current-thread runtime and only reads the board, so the endpoint cannot hold up
//! supervision: each connection gets `HEAD_LIMIT` bytes and `IO_TIMEOUT` to send its request
//! and to take the answer, at most `MAX_CONNECTIONS` are served at once (more are closed on
//! accept), and accept errors (such as running out of descriptors) back off instead of
//! spinning.

use crate::config::Instance;
use crate::error::Error;
use crate::probe::{self, Expect, Target};
use clap::Args;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest request head accepted.
const HEAD_LIMIT: usize = 8 * 1024;
/// Time a client has to send its request head, and again to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// Pause between readiness checks of one process.
const READY_INTERVAL: Duration = Duration::from_secs(1);
/// Time allowed for one readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Default address of `procrun status`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";

/// Arguments of `procrun status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Address of the status endpoint of the running procrun [default: 127.0.0.1:9000]
    #[arg(long = "addr", env = "PROCRUN_STATUS_ADDR", value_name = "ADDR")]
    pub addr: Option<String>,
    /// Print the JSON of GET /status instead of a table
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = crate::cli::parse_seconds)]
    pub timeout: Duration,
}

/// One managed process as the supervisor publishes it.
#[derive(Debug, Clone)]
pub struct ProcStatus {
    pub name: String,
    pub pid: i32,
    pub running: bool,
    pub exit_code: Option<i32>,
}

/// A readiness check (`--ready name=tcp` or `name=http:/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// `$PORT` accepts connections on 127.0.0.1.
    Tcp,
    /// GET on 127.0.0.1:`$PORT` answers 200-399.
    Http(String),
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ready::Tcp => write!(f, "tcp"),
            Ready::Http(path) => write!(f, "http:{path}"),
        }
    }
}

/// What the board knows about one instance besides the supervisor's snapshot.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    type_name: String,
    port: u32,
    check: Option<Ready>,
    /// Result of the last readiness check (None before the first).
    ready: Option<bool>,
    pid: i32,
    started_at: Option<SystemTime>,
    stopped_at: Option<SystemTime>,
}

/// The supervisor's published view of its processes (read by the endpoint).
#[derive(Debug, Default)]
pub struct StatusBoard {
    procs: RefCell<Vec<ProcStatus>>,
    entries: RefCell<Vec<Entry>>,
    listener: RefCell<Option<std::net::TcpListener>>,
    /// Set when shutdown begins: from then on `/health` answers 503.
    stopping: std::cell::Cell<bool>,
}

impl StatusBoard {
    /// Replaces the snapshot.
    pub fn update(&self, procs: Vec<ProcStatus>) {
        let now = SystemTime::now();
        let mut entries = self.entries.borrow_mut();
        for p in &procs {
            let entry = match entries.iter_mut().find(|e| e.name == p.name) {
                Some(e) => e,
                None => {
                    entries.push(Entry {
                        name: p.name.clone(),
                        type_name: p.name.split('.').next().unwrap_or("").to_string(),
                        port: 0,
                        check: None,
                        ready: None,
                        pid: 0,
                        started_at: None,
                        stopped_at: None,
                    });
                    let last = entries.len() - 1;
                    &mut entries[last]
                }
            };
            if entry.pid != p.pid {
                entry.pid = p.pid;
                entry.started_at = Some(now);
                entry.stopped_at = None;
                entry.ready = None;
            }
            if !p.running && entry.stopped_at.is_none() {
                entry.stopped_at = Some(now);
                entry.ready = Some(false);
            }
        }
        *self.procs.borrow_mut() = procs;
    }

    /// Marks the run as shutting down (load balancers should stop sending traffic).
    pub fn set_stopping(&self) {
        self.stopping.set(true);
    }

    /// A copy of the snapshot.
    pub fn snapshot(&self) -> Vec<ProcStatus> {
        self.procs.borrow().clone()
    }

    fn view(&self) -> Vec<View> {
        let procs = self.procs.borrow();
        self.entries
            .borrow()
            .iter()
            .map(|e| {
                let p = procs.iter().find(|p| p.name == e.name);
                let state = match p {
                    None => State::NotStarted,
                    Some(p) if p.running => State::Running,
                    Some(_) => State::Stopped,
                };
                let ready = state == State::Running
                    && match e.check {
                        None => true,
                        Some(_) => e.ready == Some(true),
                    };
                View {
                    entry: e.clone(),
                    state,
                    ready,
                    exit_code: p.and_then(|p| p.exit_code),
                }
            })
            .collect()
    }

    /// Whether the process named is running (None: not published yet).
    fn running(&self, name: &str) -> Option<bool> {
        self.procs
            .borrow()
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.running)
    }

    fn set_ready(&self, name: &str, ready: bool) {
        if let Some(e) = self
            .entries
            .borrow_mut()
            .iter_mut()
            .find(|e| e.name == name && e.stopped_at.is_none())
        {
            e.ready = Some(ready);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Running,
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::NotStarted => "not started",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }
}

struct View {
    entry: Entry,
    state: State,
    ready: bool,
    exit_code: Option<i32>,
}

/// Parses `--status-addr`/`--addr`: `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT` (loopback).
pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    let t = text.trim();
    let loopback = |port: &str| {
        port.parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return loopback(t);
    }
    if let Some(port) = t.strip_prefix(':') {
        return loopback(port);
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = t.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return None;
    }
    (host, port).to_socket_addrs().ok()?.next()
}

/// Parses one `--ready` item: `name=tcp`, `name=http:/path` (or `name=http`, path `/`).
pub fn parse_ready(item: &str) -> Option<(String, Ready)> {
    let (name, check) = item.trim().split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let check = check.trim();
    let ready = if check == "tcp" {
        Ready::Tcp
    } else if check == "http" {
        Ready::Http("/".into())
    } else if let Some(path) = check.strip_prefix("http:") {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        Ready::Http(path.to_string())
    } else {
        return None;
    };
    Some((name.to_string(), ready))
}

/// Validates the status options of `start` and binds the endpoint; returns the board when an
/// endpoint is wanted. Runs before anything is started.
pub fn setup(
    args: &crate::cli::StartArgs,
    instances: &[Instance],
) -> Result<Option<Rc<StatusBoard>>, Error> {
    let mut checks: Vec<(String, Ready)> = Vec::new();
    for item in args.ready.iter().filter(|i| !i.trim().is_empty()) {
        let (name, ready) = parse_ready(item).ok_or_else(|| Error::InvalidReady {
            value: item.clone(),
        })?;
        if !instances.iter().any(|i| i.type_name == name) {
            crate::warn(&format!(
                "--ready {item}: no process of type `{name}` is started"
            ));
            return Err(Error::InvalidReady {
                value: item.clone(),
            });
        }
        checks.retain(|(n, _)| *n != name);
        checks.push((name, ready));
    }
    let Some(text) = &args.status_addr else {
        if !checks.is_empty() {
            crate::warn("warning: --ready has no effect without --status-addr");
        }
        return Ok(None);
    };
    let addr = parse_addr(text).ok_or_else(|| Error::InvalidAddress {
        value: text.clone(),
    })?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Io {
            context: format!("cannot serve the status endpoint on {addr}"),
            source: e,
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    crate::warn(&format!(
        "status endpoint on http://{bound} (GET /health, GET /status)"
    ));
    let entries = instances
        .iter()
        .map(|i| Entry {
            name: i.name.clone(),
            type_name: i.type_name.clone(),
            port: i.port,
            check: checks
                .iter()
                .find(|(n, _)| *n == i.type_name)
                .map(|(_, r)| r.clone()),
            ready: None,
            pid: 0,
            started_at: None,
            stopped_at: None,
        })
        .collect();
    Ok(Some(Rc::new(StatusBoard {
        procs: RefCell::new(Vec::new()),
        entries: RefCell::new(entries),
        listener: RefCell::new(Some(listener)),
        stopping: std::cell::Cell::new(false),
    })))
}

/// Starts the endpoint and the readiness pollers as local tasks on the current runtime (call
/// from within the supervisor's `LocalSet`, after the processes are spawned and published).
pub fn serve(board: Rc<StatusBoard>) {
    let checks: Vec<(String, u32, Ready)> = board
        .entries
        .borrow()
        .iter()
        .filter_map(|e| e.check.clone().map(|c| (e.name.clone(), e.port, c)))
        .collect();
    for (name, port, check) in checks {
        tokio::task::spawn_local(poll_ready(Rc::clone(&board), name, port, check));
    }
    let Some(std_listener) = board.listener.borrow_mut().take() else {
        return;
    };
    match tokio::net::TcpListener::from_std(std_listener) {
        Ok(listener) => {
            tokio::task::spawn_local(accept_loop(listener, board));
        }
        Err(e) => crate::warn(&format!("cannot serve the status endpoint: {e}")),
    }
}

async fn poll_ready(board: Rc<StatusBoard>, name: String, port: u32, check: Ready) {
    let Ok(port) = u16::try_from(port) else {
        return;
    };
    let host = "127.0.0.1".to_string();
    let target = match check {
        Ready::Tcp => Target::Tcp { host, port },
        Ready::Http(path) => Target::Http { host, port, path },
    };
    let expect = Expect::default();
    loop {
        match board.running(&name) {
            Some(false) => return,
            Some(true) => {
                let ok = probe::check(&target, &expect, READY_TIMEOUT).await.is_ok();
                board.set_ready(&name, ok);
            }
            None => {}
        }
        tokio::time::sleep(READY_INTERVAL).await;
    }
}

/// Counts a connection while it is served.
struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, board: Rc<StatusBoard>) {
    let active = Rc::new(Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if active.get() >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                active.set(active.get() + 1);
                let slot = Slot(Rc::clone(&active));
                tokio::task::spawn_local(serve_connection(stream, Rc::clone(&board), slot));
            }
            // Out of descriptors or a transient error: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

enum ReadError {
    TooLarge,
    Closed,
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            buf.truncate(searched_from + i);
            return Ok(buf);
        }
        if buf.len() > HEAD_LIMIT {
            return Err(ReadError::TooLarge);
        }
    }
}

async fn serve_connection(mut stream: tokio::net::TcpStream, board: Rc<StatusBoard>, _slot: Slot) {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(ReadError::TooLarge)) => {
            let r = response(431, "text/plain", b"request head too large\n", false, "");
            let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(&r)).await;
            return;
        }
        Ok(Err(ReadError::Closed)) => return,
        Err(_elapsed) => {
            let r = response(408, "text/plain", b"request timeout\n", false, "");
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&r)).await;
            return;
        }
    };
    let answer = route(&head, &board);
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

fn route(head: &[u8], board: &StatusBoard) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return response(400, "text/plain", b"bad request\n", false, "");
    };
    if !version.starts_with("HTTP/1.") {
        return response(400, "text/plain", b"bad request\n", false, "");
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response(
            405,
            "text/plain",
            b"method not allowed\n",
            false,
            "Allow: GET, HEAD\r\n",
        );
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/health" => {
            let (mut code, mut body) = health(&board.view());
            if board.stopping.get() {
                code = 503;
                body = format!("stopping (procrun is shutting down); {body}");
            }
            response(
                code,
                "text/plain; charset=utf-8",
                body.as_bytes(),
                head_only,
                "",
            )
        }
        "/status" => {
            let body = status_json(&board.view());
            response(200, "application/json", body.as_bytes(), head_only, "")
        }
        _ => response(
            404,
            "text/plain",
            b"not found (try /health or /status)\n",
            head_only,
            "",
        ),
    }
}

fn response(code: u16, ctype: &str, body: &[u8], head_only: bool, extra: &str) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

fn health(view: &[View]) -> (u16, String) {
    if view.is_empty() {
        return (503, "no processes\n".into());
    }
    let bad: Vec<String> = view
        .iter()
        .filter(|v| !v.ready)
        .map(|v| {
            let why = match (v.state, v.exit_code) {
                (State::Running, _) => "not ready".to_string(),
                (State::Stopped, Some(code)) => format!("stopped, exit {code}"),
                (state, _) => state.as_str().to_string(),
            };
            format!("{} ({why})", v.entry.name)
        })
        .collect();
    if bad.is_empty() {
        (200, format!("ok: {} running and ready\n", view.len()))
    } else {
        (503, format!("unhealthy: {}\n", bad.join(", ")))
    }
}

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::output::time::rfc3339_utc(d.as_secs() as i64, d.subsec_millis())
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn status_json(view: &[View]) -> String {
    let now = SystemTime::now();
    let healthy = !view.is_empty() && view.iter().all(|v| v.ready);
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let procs: Vec<String> = view
        .iter()
        .map(|v| {
            let e = &v.entry;
            let uptime = match (v.state, e.started_at) {
                (State::Running, Some(t)) => Some(
                    now.duration_since(t)
                        .unwrap_or_default()
                        .as_secs()
                        .to_string(),
                ),
                _ => None,
            };
            format!(
                "{{\"name\":{},\"type\":{},\"pid\":{},\"port\":{},\"state\":{},\"started_at\":{},\"uptime_seconds\":{},\"stopped_at\":{},\"exit_code\":{},\"ready\":{},\"ready_check\":{}}}",
                json_string(&e.name),
                json_string(&e.type_name),
                opt((e.pid > 0).then(|| e.pid.to_string())),
                opt((e.port > 0).then(|| e.port.to_string())),
                json_string(v.state.as_str()),
                opt(e.started_at.map(|t| json_string(&rfc3339(t)))),
                opt(uptime),
                opt(e.stopped_at.map(|t| json_string(&rfc3339(t)))),
                opt(v.exit_code.map(|c| c.to_string())),
                v.ready,
                opt(e.check.as_ref().map(|c| json_string(&c.to_string()))),
            )
        })
        .collect();
    format!(
        "{{\"healthy\":{healthy},\"pid\":{},\"processes\":[{}]}}\n",
        std::process::id(),
        procs.join(",")
    )
}

// ---------------------------------------------------------------------------------------------
// `procrun status`

/// `procrun status`: fetches GET /status and prints a table (or the JSON).
pub fn run(args: &StatusArgs) -> i32 {
    let text = args.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    let Some(mut addr) = parse_addr(text) else {
        crate::warn(&format!(
            "status: {}",
            Error::InvalidAddress { value: text.into() }
        ));
        return crate::error::EXIT_BAD_INPUT;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        });
    }
    let Some(rt) = crate::runtime() else {
        return 1;
    };
    let fetched = rt.block_on(async {
        tokio::time::timeout(args.timeout, async {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            probe::exchange(stream, &addr.to_string(), "/status", true, 4 << 20).await
        })
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()))
    });
    let response = match fetched {
        Ok(r) if r.status == 200 => r,
        Ok(r) => {
            crate::warn(&format!(
                "status: http://{addr}/status answered {}",
                r.status
            ));
            return 1;
        }
        Err(e) => {
            crate::warn(&format!(
                "status: cannot reach procrun's status endpoint at {addr}: {e} \
                 (is `procrun start --status-addr {addr}` running?)"
            ));
            return 1;
        }
    };
    let out = if args.json {
        String::from_utf8_lossy(&response.body).into_owned()
    } else {
        match json::parse(&String::from_utf8_lossy(&response.body)) {
            Some(value) => table(&value),
            None => {
                crate::warn(&format!("status: {addr}: the answer is not valid JSON"));
                return 1;
            }
        }
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    0
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

/// The human table of a /status document.
fn table(doc: &json::Value) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "PID".into(),
        "STATE".into(),
        "READY".into(),
        "UPTIME/EXIT".into(),
    ]];
    let empty = Vec::new();
    let procs = doc
        .get("processes")
        .and_then(|p| p.as_array())
        .unwrap_or(&empty);
    for p in procs {
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let n = |k: &str| p.get(k).and_then(|v| v.as_f64());
        let state = s("state");
        let ready = match p.get("ready") {
            Some(json::Value::Bool(true)) => "yes",
            _ if state != "running" => "-",
            _ => "no",
        };
        let last = match (n("uptime_seconds"), n("exit_code")) {
            (_, Some(code)) => format!("exit {code}"),
            (Some(up), None) => human_secs(up as u64),
            (None, None) => "-".into(),
        };
        rows.push([
            s("name"),
            n("pid")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            state,
            ready.into(),
            last,
        ]);
    }
    let mut widths = [0usize; 5];
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
    let healthy = matches!(doc.get("healthy"), Some(json::Value::Bool(true)));
    out.push_str(if healthy { "healthy\n" } else { "unhealthy\n" });
    out
}

/// A small JSON reader for `procrun status` (it only reads what the endpoint writes).
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
        pub fn as_array(&self) -> Option<&Vec<Value>> {
            match self {
                Value::Arr(a) => Some(a),
                _ => None,
            }
        }
    }

    pub fn parse(text: &str) -> Option<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        (p.i == p.s.len()).then_some(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        depth: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn eat(&mut self, lit: &[u8]) -> bool {
            if self.s[self.i.min(self.s.len())..].starts_with(lit) {
                self.i += lit.len();
                true
            } else {
                false
            }
        }
        fn value(&mut self) -> Option<Value> {
            self.ws();
            self.depth += 1;
            if self.depth > 64 {
                return None;
            }
            let v = match *self.s.get(self.i)? {
                b'n' => self.eat(b"null").then_some(Value::Null),
                b't' => self.eat(b"true").then_some(Value::Bool(true)),
                b'f' => self.eat(b"false").then_some(Value::Bool(false)),
                b'"' => self.string().map(Value::Str),
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if !self.eat(b"]") {
                        loop {
                            items.push(self.value()?);
                            self.ws();
                            if self.eat(b"]") {
                                break;
                            }
                            if !self.eat(b",") {
                                return None;
                            }
                        }
                    }
                    Some(Value::Arr(items))
                }
                b'{' => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if !self.eat(b"}") {
                        loop {
                            self.ws();
                            let k = self.string()?;
                            self.ws();
                            if !self.eat(b":") {
                                return None;
                            }
                            members.push((k, self.value()?));
                            self.ws();
                            if self.eat(b"}") {
                                break;
                            }
                            if !self.eat(b",") {
                                return None;
                            }
                        }
                    }
                    Some(Value::Obj(members))
                }
                _ => {
                    let start = self.i;
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|b| b"+-.eE0123456789".contains(b))
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()?
                        .parse()
                        .ok()
                        .map(Value::Num)
                }
            };
            self.depth -= 1;
            v
        }
        fn string(&mut self) -> Option<String> {
            if !self.eat(b"\"") {
                return None;
            }
            let mut out = Vec::new();
            loop {
                let b = *self.s.get(self.i)?;
                self.i += 1;
                match b {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = *self.s.get(self.i)?;
                        self.i += 1;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let hex =
                                    std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                                self.i += 4;
                                char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                    .unwrap_or('\u{fffd}')
                            }
                            _ => return None,
                        };
                        let mut tmp = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    }
                    b => out.push(b),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let l = |p| Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
        assert_eq!(parse_addr("9000"), l(9000));
        assert_eq!(parse_addr(":9000"), l(9000));
        assert_eq!(parse_addr("127.0.0.1:9000"), l(9000));
        assert_eq!(parse_addr("0.0.0.0:80"), "0.0.0.0:80".parse().ok());
        assert_eq!(parse_addr("[::1]:80"), "[::1]:80".parse().ok());
        for bad in [
            "",
            "x",
            "127.0.0.1",
            "127.0.0.1:99999",
            "a b:1",
            "http://x:1",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn ready_specs() {
        assert_eq!(parse_ready("web=tcp"), Some(("web".into(), Ready::Tcp)));
        assert_eq!(
            parse_ready("web=http:/health"),
            Some(("web".into(), Ready::Http("/health".into())))
        );
        assert_eq!(
            parse_ready("web=http"),
            Some(("web".into(), Ready::Http("/".into())))
        );
        for bad in ["web", "=tcp", "web=udp", "web=http:health", "web=http:/a b"] {
            assert_eq!(parse_ready(bad), None, "{bad}");
        }
    }

    #[test]
    fn board_and_documents() {
        let board = StatusBoard::default();
        board.update(vec![
            ProcStatus {
                name: "web.1".into(),
                pid: 10,
                running: true,
                exit_code: None,
            },
            ProcStatus {
                name: "worker.1".into(),
                pid: 11,
                running: false,
                exit_code: Some(3),
            },
        ]);
        let (code, body) = health(&board.view());
        assert_eq!(code, 503);
        assert_eq!(body, "unhealthy: worker.1 (stopped, exit 3)\n");
        let doc = json::parse(&status_json(&board.view())).unwrap();
        let procs = doc.get("processes").unwrap().as_array().unwrap();
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[1].get("exit_code"), Some(&json::Value::Num(3.0)));
        assert_eq!(procs[0].get("state").unwrap().as_str(), Some("running"));
        let t = table(&doc);
        assert!(t.starts_with("NAME"), "{t}");
        assert!(t.contains("exit 3"), "{t}");
        assert!(t.ends_with("unhealthy\n"), "{t}");
    }

    #[test]
    fn requests() {
        let board = StatusBoard::default();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        assert!(text(route(b"GET /health HTTP/1.1", &board)).starts_with("HTTP/1.1 503"));
        assert!(text(route(b"GET /nope HTTP/1.1", &board)).starts_with("HTTP/1.1 404"));
        assert!(text(route(b"POST /status HTTP/1.1", &board)).starts_with("HTTP/1.1 405"));
        assert!(text(route(b"garbage", &board)).starts_with("HTTP/1.1 400"));
        assert!(text(route(b"", &board)).starts_with("HTTP/1.1 400"));
        let r = text(route(b"HEAD /status?x HTTP/1.0", &board));
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn json_strings() {
        let s = "a\"b\\c\n\u{1}é";
        let doc = json::parse(&json_string(s)).unwrap();
        assert_eq!(doc.as_str(), Some(s));
        assert!(json::parse("[[[").is_none());
        assert!(json::parse(&"[".repeat(1000)).is_none());
    }
}
