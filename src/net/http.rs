//! The little HTTP/1.1 procrun speaks: a `GET` client with `Connection: close` (probes,
//! readiness checks, `procrun status`) and, for the status endpoint, request parsing and
//! answers. Heads are parsed by `httparse`; bodies are bounded by the caller's limits.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head the client reads.
const RESPONSE_HEAD_LIMIT: usize = 16 * 1024;
/// Headers parsed per head; more is an error.
const MAX_HEADERS: usize = 64;

/// A response as the client saw it (the body capped by the caller's limit).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

struct ResponseHead {
    /// Bytes of the head, blank line included.
    len: usize,
    status: u16,
    chunked: bool,
    content_length: Option<usize>,
}

/// `Ok(None)`: the head is not complete yet.
fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return Err("not an HTTP/1 response".into()),
        Err(httparse::Error::Status) => return Err("invalid HTTP status line".into()),
        Err(e) => return Err(format!("invalid HTTP response head ({e})")),
    };
    let status = r
        .code
        .filter(|c| (100..=999).contains(c))
        .ok_or("invalid HTTP status line")?;
    let mut chunked = false;
    let mut content_length = None;
    for h in r.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        }
    }
    Ok(Some(ResponseHead {
        len,
        status,
        chunked,
        content_length,
    }))
}

/// GET `path` over `stream`; reads the head and, when `need_body`, the body up to
/// `body_limit` bytes. Not bounded in time: callers wrap it in a timeout.
pub(crate) async fn get<S: AsyncRead + AsyncWrite + Unpin>(
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
        .map_err(|e| format!("send: {}", crate::error::reason(&e)))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut head: Option<ResponseHead> = None;
    loop {
        if let Some(h) = &head {
            if !need_body {
                break;
            }
            let body = &buf[h.len..];
            let done = match (h.chunked, h.content_length) {
                (true, _) => dechunk(body, body_limit).1,
                (false, Some(n)) => body.len() >= n,
                (false, None) => false,
            };
            if done || body.len() >= body_limit {
                break;
            }
        } else if buf.len() > RESPONSE_HEAD_LIMIT {
            return Err("response head too large".into());
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A reset after the head: judge what arrived.
            Err(_) if head.is_some() => 0,
            Err(e) => return Err(format!("receive: {}", crate::error::reason(&e))),
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
        // Interim answers (`100 Continue`, `103 Early Hints`) precede the real one: skip them.
        while head.is_none() {
            match parse_response_head(&buf)? {
                Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                    buf.drain(..h.len);
                }
                parsed => {
                    head = parsed;
                    break;
                }
            }
        }
    }
    let Some(h) = head else {
        return Err("no response".into());
    };
    let raw = &buf[h.len..];
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

/// A request head as the status endpoint needs it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path without the query.
    pub(crate) path: String,
    /// The query string, without `?` (empty when there is none).
    pub(crate) query: String,
}

impl Request {
    /// The value of query parameter `key` (the first), if present.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Why a request head is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// Not a valid HTTP/1 request head (answered 400).
    Invalid,
    /// More header fields than are parsed (answered 431, as a head that is too long).
    TooManyHeaders,
}

/// Parses a request head: the request and the length of its head (blank line included).
/// `Ok(None)`: not complete yet.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooManyHeaders),
        Err(_) => return Err(BadRequest::Invalid),
    };
    let (Some(method), Some(target)) = (r.method, r.path) else {
        return Err(BadRequest::Invalid);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    };
    Ok(Some((request, len)))
}

/// Whether `bytes` contain the blank line that ends a head (`\n\n` or `\n\r\n`: httparse
/// accepts bare `\n` line ends). Lets a reader call [`parse_request`] once the head can be
/// complete instead of on every read, so a client that sends its head a byte at a time costs
/// linear time, not quadratic.
pub(crate) fn has_blank_line(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// A complete answer with `Connection: close`; `head_only` leaves the body out (for HEAD).
pub(crate) fn response(
    code: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
    extra: &str,
) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn response_heads() {
        let h = parse_response_head(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n\r\nbody",
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.content_length, h.len), (503, Some(12), 56));
        let h = parse_response_head(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked);
        assert!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nX: y\r\n")
                .unwrap()
                .is_none()
        );
        assert!(parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_response_head(b"HTTP/1.1 042 X\r\n\r\n").is_err());
    }

    /// `get` against a server that answers `answer` (written before the request is read).
    fn get_from(answer: &[u8], need_body: bool) -> Result<Response, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            server.write_all(answer).await.unwrap();
            server.shutdown().await.unwrap();
            let response = get(client, "x", "/", need_body, 1024).await;
            drop(server);
            response
        })
    }

    #[test]
    fn responses() {
        let r = get_from(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(get_from(early, false).unwrap().status, 204);
        let r = get_from(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false).unwrap();
        assert_eq!(r.status, 101);
        let r = get_from(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!(r.body, b"ok");
        assert_eq!(
            get_from(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap_err(),
            "connection closed without a response"
        );
        assert_eq!(
            get_from(b"", false).unwrap_err(),
            "connection closed without a response"
        );
    }

    #[test]
    fn requests() {
        let (r, len) = parse_request(b"GET /status?format=text&x HTTP/1.1\r\nHost: a\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(len, 47);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/status"));
        assert_eq!(r.param("format"), Some("text"));
        assert_eq!(r.param("x"), Some(""));
        assert_eq!(r.param("y"), None);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None));
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nX"), Ok(None));
        assert_eq!(parse_request(b"garbage\r\n\r\n"), Err(BadRequest::Invalid));
        assert_eq!(
            parse_request(b"GET / SPDY/3\r\n\r\n"),
            Err(BadRequest::Invalid)
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            parse_request(many.as_bytes()),
            Err(BadRequest::TooManyHeaders)
        );
    }

    #[test]
    fn blank_lines() {
        for end in ["a\r\n\r\n", "a\n\n", "a\r\n\n", "a\n\r\n", "\n\n"] {
            assert!(has_blank_line(end.as_bytes()), "{end:?}");
        }
        for not in ["", "\n", "a\r\n", "a\r\nb\r\n", "\n\r", "\r\n\r"] {
            assert!(!has_blank_line(not.as_bytes()), "{not:?}");
        }
    }
}
