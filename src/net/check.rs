//! One health-check attempt against a target: a TCP connect, an HTTP GET whose status (and
//! optionally body) is judged, or a Unix-socket connect (optionally with an HTTP GET over it).
//! `procrun probe` and the status endpoint's readiness checks both use it.

use super::addr::{self, HostPort};
use super::http;
use std::path::PathBuf;
use std::time::Duration;

/// Longest response body read (for `--expect-body`).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// Where to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// GET `path` on `addr`.
    Http { addr: HostPort, path: String },
    /// A TCP connect.
    Tcp { addr: HostPort },
    /// A Unix-socket connect, or a GET of `http_path` over it.
    Unix {
        path: PathBuf,
        http_path: Option<String>,
    },
}

/// Inclusive ranges of HTTP status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusRanges(pub(crate) Vec<(u16, u16)>);

impl Default for StatusRanges {
    fn default() -> Self {
        StatusRanges(vec![(200, 399)])
    }
}

impl StatusRanges {
    pub(crate) fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= status && status <= hi)
    }
}

/// What an HTTP answer must look like.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expect {
    pub(crate) status: StatusRanges,
    pub(crate) body: Option<String>,
}

fn probe_addr(text: &str) -> Result<HostPort, String> {
    let hp = addr::parse(text)?;
    if hp.port == 0 {
        return Err("invalid port `0` (1-65535)".into());
    }
    Ok(hp)
}

fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("the path must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Parses a target; the error says what is wrong with it.
pub(crate) fn parse_target(text: &str) -> Result<Target, String> {
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
        check_path(&path)?;
        Ok(Target::Http {
            addr: probe_addr(authority)?,
            path,
        })
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        Ok(Target::Tcp {
            addr: probe_addr(rest.trim_end_matches('/'))?,
        })
    } else if let Some(rest) = text.strip_prefix("unix:") {
        let (path, http_path) = match rest.rsplit_once(":/") {
            Some((p, h)) => (p, Some(format!("/{h}"))),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err("expected unix:/path/to/socket".into());
        }
        if let Some(h) = &http_path {
            check_path(h)?;
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

/// One attempt, bounded by `timeout` (name resolution included): `Ok` when the target is
/// healthy, else the reason.
pub(crate) async fn check(
    target: &Target,
    expect: &Expect,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, check_inner(target, expect)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", show_duration(timeout))),
    }
}

async fn check_inner(target: &Target, expect: &Expect) -> Result<(), String> {
    let need_body = expect.body.is_some();
    let response = match target {
        Target::Tcp { addr } => {
            addr::connect(addr).await?;
            return Ok(());
        }
        Target::Http { addr, path } => {
            let stream = addr::connect(addr).await?;
            http::get(stream, &addr.authority(), path, need_body, BODY_LIMIT).await?
        }
        Target::Unix { path, http_path } => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("connect: {}", crate::error::reason(&e)))?;
            match http_path {
                None => return Ok(()),
                Some(p) => http::get(stream, "localhost", p, need_body, BODY_LIMIT).await?,
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

fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn targets() {
        let cases: &[(&str, Target)] = &[
            (
                "http://127.0.0.1:8080/health?x=1",
                Target::Http {
                    addr: hp("127.0.0.1", 8080),
                    path: "/health?x=1".into(),
                },
            ),
            (
                "http://web:80",
                Target::Http {
                    addr: hp("web", 80),
                    path: "/".into(),
                },
            ),
            (
                "http://web:80?q",
                Target::Http {
                    addr: hp("web", 80),
                    path: "/?q".into(),
                },
            ),
            (
                "http://[::1]:80/x",
                Target::Http {
                    addr: hp("::1", 80),
                    path: "/x".into(),
                },
            ),
            (
                "tcp://localhost:5432",
                Target::Tcp {
                    addr: hp("localhost", 5432),
                },
            ),
            (
                "unix:/run/app.sock",
                Target::Unix {
                    path: "/run/app.sock".into(),
                    http_path: None,
                },
            ),
            (
                "unix:/run/app.sock:/health",
                Target::Unix {
                    path: "/run/app.sock".into(),
                    http_path: Some("/health".into()),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_target(text).as_ref(), Ok(want), "{text}");
        }
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
    fn status_ranges() {
        let r = StatusRanges(vec![(200, 200), (204, 204), (300, 399)]);
        assert!(r.contains(200) && r.contains(204) && r.contains(350));
        assert!(!r.contains(201) && !r.contains(400));
        assert!(StatusRanges::default().contains(399));
        assert!(!StatusRanges::default().contains(400));
    }
}
