//! `procrun probe`: one-shot and watch-mode health probes, and the small async HTTP/1.1 client
//! that the status endpoint's readiness checks and `procrun status` share.
//!
//! Everything runs on one current-thread tokio runtime, with no thread of its own: targets of
//! one round are probed concurrently as local tasks, and SIGINT/SIGTERM (blocked since `main`)
//! are read from the signalfd, so a watching sidecar stops at once. Host names are resolved with
//! the blocking resolver (an IP address needs no resolution; a name in a compose network is
//! answered at once).

use crate::cli::parse_seconds;
use clap::Args;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head read.
const HEAD_LIMIT: usize = 16 * 1024;
/// Longest response body read (for `--expect-body`).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Arguments of `procrun probe`.
#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Time allowed for each attempt (connect, request, response)
    #[arg(long, env = "PROCRUN_PROBE_TIMEOUT", value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Attempts after the first before giving up (one-shot mode)
    #[arg(
        long,
        env = "PROCRUN_PROBE_RETRIES",
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "watch"
    )]
    pub retries: u32,
    /// Pause between attempts [default: 1s; 10s with --watch]
    #[arg(long, env = "PROCRUN_PROBE_INTERVAL", value_name = "SECONDS", value_parser = parse_seconds)]
    pub interval: Option<Duration>,
    /// Healthy HTTP statuses: 200, 200-299 or a comma-separated list [default: 200-399]
    #[arg(long = "expect-status", env = "PROCRUN_PROBE_EXPECT_STATUS", value_name = "CODES", value_parser = parse_status_ranges)]
    pub expect_status: Option<StatusRanges>,
    /// The HTTP response body (its first 64 KiB) must contain this text
    #[arg(
        long = "expect-body",
        env = "PROCRUN_PROBE_EXPECT_BODY",
        value_name = "TEXT"
    )]
    pub expect_body: Option<String>,
    /// Keep probing every --interval; exit 1 after --failures consecutive failed rounds
    #[arg(long)]
    pub watch: bool,
    /// Consecutive failed rounds after which --watch exits 1
    #[arg(long, env = "PROCRUN_PROBE_FAILURES", value_name = "N", default_value_t = 3, requires = "watch",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub failures: u32,
    /// Targets: http://host:port/path, tcp://host:port, unix:/path (or unix:/path:/http-path)
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// Inclusive ranges of HTTP status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl Default for StatusRanges {
    fn default() -> Self {
        StatusRanges(vec![(200, 399)])
    }
}

impl StatusRanges {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= status && status <= hi)
    }
}

/// Parses `200`, `200-299`, `200,204,300-399`.
pub fn parse_status_ranges(text: &str) -> Result<StatusRanges, String> {
    let bad = || format!("invalid status `{text}` (use e.g. 200, 200-299 or 200,204)");
    let code = |s: &str| match s.trim().parse::<u16>() {
        Ok(n) if (100..=999).contains(&n) => Ok(n),
        _ => Err(bad()),
    };
    let mut ranges = Vec::new();
    for item in text.split(',') {
        let range = match item.split_once('-') {
            Some((lo, hi)) => (code(lo)?, code(hi)?),
            None => {
                let n = code(item)?;
                (n, n)
            }
        };
        if range.0 > range.1 {
            return Err(bad());
        }
        ranges.push(range);
    }
    Ok(StatusRanges(ranges))
}

/// Where to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// GET `path` on `host:port`.
    Http {
        host: String,
        port: u16,
        path: String,
    },
    /// A TCP connect.
    Tcp { host: String, port: u16 },
    /// A Unix-socket connect, or a GET of `http_path` over it.
    Unix {
        path: PathBuf,
        http_path: Option<String>,
    },
}

/// Splits `host:port` (`[v6]:port` for IPv6).
fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or("expected [ADDRESS]:PORT")?;
        (h, p)
    } else {
        text.rsplit_once(':').ok_or("expected HOST:PORT")?
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err("expected HOST:PORT".into());
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("invalid port `{port}`"))?;
    Ok((host.to_string(), port))
}

/// Parses a target; the error says what is wrong with it.
pub fn parse_target(text: &str) -> Result<Target, String> {
    if let Some(rest) = text.strip_prefix("http://") {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path must not contain spaces or control characters".into());
        }
        let (host, port) = host_port(authority)?;
        Ok(Target::Http { host, port, path })
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        let (host, port) = host_port(rest.trim_end_matches('/'))?;
        Ok(Target::Tcp { host, port })
    } else if let Some(rest) = text.strip_prefix("unix:") {
        let (path, http_path) = match rest.rsplit_once(":/") {
            Some((p, h)) => (p, Some(format!("/{h}"))),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err("expected unix:/path/to/socket".into());
        }
        if let Some(h) = &http_path
            && h.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            return Err("the path must not contain spaces or control characters".into());
        }
        Ok(Target::Unix {
            path: PathBuf::from(path),
            http_path,
        })
    } else if text.starts_with("https://") {
        Err("https is not supported (probe the plain-HTTP port)".into())
    } else {
        Err("expected http://HOST:PORT/PATH, tcp://HOST:PORT or unix:/PATH".into())
    }
}

/// What an HTTP answer must look like.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: StatusRanges,
    pub body: Option<String>,
}

/// A parsed HTTP response (the body is capped at `BODY_LIMIT`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An io::Error as a short reason, without the "(os error N)" suffix.
fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let list: Vec<SocketAddr> = addrs.collect();
            if list.is_empty() {
                Err(format!("cannot resolve {host}"))
            } else {
                Ok(list)
            }
        }
        Err(e) => Err(format!("cannot resolve {host}: {}", reason(&e))),
    }
}

async fn connect_tcp(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::from("no address");
    for addr in resolve(host, port)? {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect: {}", reason(&e)),
        }
    }
    Err(last)
}

/// One attempt, bounded by `timeout`: `Ok` when the target is healthy, else the reason.
pub async fn check(target: &Target, expect: &Expect, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, check_inner(target, expect)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", show_duration(timeout))),
    }
}

async fn check_inner(target: &Target, expect: &Expect) -> Result<(), String> {
    let need_body = expect.body.is_some();
    let response = match target {
        Target::Tcp { host, port } => {
            connect_tcp(host, *port).await?;
            return Ok(());
        }
        Target::Http { host, port, path } => {
            let stream = connect_tcp(host, *port).await?;
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            exchange(stream, &authority, path, need_body, BODY_LIMIT).await?
        }
        Target::Unix { path, http_path } => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connect: {}", reason(&e)))?;
            match http_path {
                None => return Ok(()),
                Some(p) => exchange(stream, "localhost", p, need_body, BODY_LIMIT).await?,
            }
        }
    };
    if !expect.status.contains(response.status) {
        return Err(format!("status {}", response.status));
    }
    if let Some(want) = &expect.body
        && !contains(&response.body, want.as_bytes())
    {
        return Err(format!(
            "status {}, body does not contain {want:?}",
            response.status
        ));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// GET `path` over `stream` with `Connection: close`; reads the head and, when `need_body`,
/// the body up to `body_limit` bytes. Not bounded in time: callers wrap it in a timeout.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
    need_body: bool,
    body_limit: usize,
) -> Result<Response, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: procrun/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {}", reason(&e)))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut head: Option<(usize, Head)> = None;
    loop {
        if let Some((start, h)) = &head {
            if !need_body {
                break;
            }
            let body = &buf[*start..];
            let done = match (h.chunked, h.content_length) {
                (true, _) => dechunk(body, body_limit).1,
                (false, Some(n)) => body.len() >= n,
                (false, None) => false,
            };
            if done || body.len() >= body_limit {
                break;
            }
        } else if buf.len() > HEAD_LIMIT {
            return Err("response head too large".into());
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A reset after the head: judge what arrived.
            Err(_) if head.is_some() => 0,
            Err(e) => return Err(format!("receive: {}", reason(&e))),
        };
        if n == 0 {
            if head.is_none() {
                return Err(if buf.is_empty() {
                    "connection closed without a response".into()
                } else {
                    "connection closed in the middle of the response head".into()
                });
            }
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if head.is_none()
            && let Some(end) = find(&buf, b"\r\n\r\n")
        {
            head = Some((end + 4, parse_head(&buf[..end])?));
        }
    }
    let Some((start, h)) = head else {
        return Err("no response".into());
    };
    let raw = &buf[start..];
    let mut body = if h.chunked {
        dechunk(raw, body_limit).0
    } else {
        raw.to_vec()
    };
    body.truncate(body_limit);
    Ok(Response {
        status: h.status,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Head {
    status: u16,
    chunked: bool,
    content_length: Option<usize>,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1 response".into());
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=999).contains(c))
        .ok_or("invalid HTTP status line")?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().ok();
            }
        }
    }
    Ok(Head {
        status,
        chunked,
        content_length,
    })
}

/// Decodes as much of a chunked body as is there; also says whether the last chunk was seen.
fn dechunk(mut raw: &[u8], limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, true);
        };
        if size == 0 {
            return (out, true);
        }
        let data = &raw[eol + 2..];
        if data.len() < size {
            out.extend_from_slice(data);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        if out.len() >= limit {
            return (out, true);
        }
        raw = data.get(size + 2..).unwrap_or(&[]);
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// SIGINT, SIGTERM, SIGHUP or SIGQUIT: its number. Never returns without signals.
async fn stop_signal(signals: &mut Option<crate::signals::Signals>) -> i32 {
    let Some(s) = signals else {
        return std::future::pending().await;
    };
    loop {
        let signo = s.recv().await;
        if [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT].contains(&signo) {
            return signo;
        }
    }
}

/// Probes `targets` (indexes into `all`) concurrently; results in the order given.
async fn round(
    all: &Rc<Vec<Target>>,
    indexes: &[usize],
    expect: &Rc<Expect>,
    timeout: Duration,
) -> Vec<(usize, Result<(), String>)> {
    let mut set = tokio::task::JoinSet::new();
    for &i in indexes {
        let (all, expect) = (Rc::clone(all), Rc::clone(expect));
        set.spawn_local(async move { (i, check(&all[i], &expect, timeout).await) });
    }
    let mut results = Vec::with_capacity(indexes.len());
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            results.push(r);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results
}

fn log(message: &str) {
    let (secs, millis) = crate::output::time::now();
    crate::warn(&format!(
        "{} probe: {message}",
        crate::output::time::rfc3339_utc(secs, millis)
    ));
}

/// Runs the probe; returns the exit code.
pub fn run(args: &ProbeArgs) -> i32 {
    let mut targets = Vec::new();
    for raw in &args.targets {
        match parse_target(raw) {
            Ok(t) => targets.push(t),
            Err(e) => {
                crate::warn(&format!("probe: {raw}: {e}"));
                return crate::error::EXIT_BAD_INPUT;
            }
        }
    }
    crate::block_on_local(run_async(args, Rc::new(targets)))
}

async fn run_async(args: &ProbeArgs, targets: Rc<Vec<Target>>) -> i32 {
    let expect = Rc::new(Expect {
        status: args.expect_status.clone().unwrap_or_default(),
        body: args.expect_body.clone(),
    });
    let mut signals = crate::signals::Signals::new().ok();
    if args.watch {
        return watch(args, &targets, &expect, &mut signals).await;
    }
    let interval = args.interval.unwrap_or(Duration::from_secs(1));
    let mut pending: Vec<usize> = (0..targets.len()).collect();
    let mut failed = Vec::new();
    for attempt in 0..=args.retries {
        if attempt > 0 {
            tokio::select! {
                signo = stop_signal(&mut signals) => return 128 + signo,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let results = tokio::select! {
            signo = stop_signal(&mut signals) => return 128 + signo,
            r = round(&targets, &pending, &expect, args.timeout) => r,
        };
        failed = results
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect();
        pending = failed.iter().map(|(i, _)| *i).collect();
        if pending.is_empty() {
            return 0;
        }
    }
    for (i, e) in failed {
        crate::warn(&format!("probe: {}: {e}", args.targets[i]));
    }
    1
}

async fn watch(
    args: &ProbeArgs,
    targets: &Rc<Vec<Target>>,
    expect: &Rc<Expect>,
    signals: &mut Option<crate::signals::Signals>,
) -> i32 {
    let interval = args.interval.unwrap_or(Duration::from_secs(10));
    let all: Vec<usize> = (0..targets.len()).collect();
    let mut was_failing = vec![false; targets.len()];
    let mut streak = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let results = tokio::select! {
            _ = stop_signal(signals) => return 0,
            r = round(targets, &all, expect, args.timeout) => r,
        };
        let any_failed = results.iter().any(|(_, r)| r.is_err());
        streak = if any_failed { streak + 1 } else { 0 };
        for (i, r) in results {
            let raw = &args.targets[i];
            match r {
                Err(e) => {
                    log(&format!(
                        "{raw}: {e} (failure {streak} of {})",
                        args.failures
                    ));
                    was_failing[i] = true;
                }
                Ok(()) if was_failing[i] => {
                    log(&format!("{raw}: healthy again"));
                    was_failing[i] = false;
                }
                Ok(()) => {}
            }
        }
        if streak >= args.failures {
            log(&format!(
                "unhealthy {streak} times in a row, exiting with 1"
            ));
            return 1;
        }
        tokio::select! {
            _ = stop_signal(signals) => return 0,
            _ = tokio::time::sleep_until(started + interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("http://127.0.0.1:8080/health?x=1"),
            Ok(Target::Http {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/health?x=1".into()
            })
        );
        assert_eq!(
            parse_target("http://web:80"),
            Ok(Target::Http {
                host: "web".into(),
                port: 80,
                path: "/".into()
            })
        );
        assert_eq!(
            parse_target("http://[::1]:80/x"),
            Ok(Target::Http {
                host: "::1".into(),
                port: 80,
                path: "/x".into()
            })
        );
        assert_eq!(
            parse_target("tcp://localhost:5432"),
            Ok(Target::Tcp {
                host: "localhost".into(),
                port: 5432
            })
        );
        assert_eq!(
            parse_target("unix:/run/app.sock"),
            Ok(Target::Unix {
                path: "/run/app.sock".into(),
                http_path: None
            })
        );
        assert_eq!(
            parse_target("unix:/run/app.sock:/health"),
            Ok(Target::Unix {
                path: "/run/app.sock".into(),
                http_path: Some("/health".into())
            })
        );
        for bad in [
            "http://host",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "tcp://h",
            "https://h:443/",
            "ftp://h:21",
            "unix:",
            "http://h:80/a b",
            "",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses() {
        let r = parse_status_ranges("200,204,300-399").unwrap();
        assert!(r.contains(200) && r.contains(204) && r.contains(350));
        assert!(!r.contains(201) && !r.contains(400));
        for bad in ["", "2xx", "300-200", "99", "200-", "1000"] {
            assert!(parse_status_ranges(bad).is_err(), "{bad}");
        }
        assert!(StatusRanges::default().contains(399));
        assert!(!StatusRanges::default().contains(400));
    }

    #[test]
    fn chunked() {
        let (body, done) = dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n", 100);
        assert_eq!(body, b"hello world");
        assert!(done);
        let (body, done) = dechunk(b"5\r\nhel", 100);
        assert_eq!(body, b"hel");
        assert!(!done);
    }

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12").unwrap();
        assert_eq!(h.status, 503);
        assert_eq!(h.content_length, Some(12));
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_head(b"HTTP/1.1 abc").is_err());
    }
}
