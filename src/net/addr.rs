//! `HOST:PORT` addresses: the one parser behind `--status-addr`, `status --addr` and the probe
//! targets, and host-name resolution off the event loop (callers bound the wait).

use crate::error::reason;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use tokio::sync::watch;

/// A host (name or IP address, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HostPort {
    /// `host:port`, with brackets around an IPv6 address (for a `Host` header or a message).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT` or `[IPV6]:PORT`. The host is not resolved here; port 0 is accepted
/// (callers that cannot use it say so).
pub(crate) fn parse(text: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        rest.split_once("]:").ok_or("expected [ADDRESS]:PORT")?
    } else {
        text.rsplit_once(':').ok_or("expected HOST:PORT")?
    };
    if host.is_empty()
        || host.contains(['/', ' ', '@', '[', ']'])
        || host.contains(char::is_control)
    {
        return Err("expected HOST:PORT".into());
    }
    if text.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err("expected [IPV6-ADDRESS]:PORT".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port `{port}` (1-65535)"))?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// A listening address: `HOST:PORT` as [`parse`], or a bare `PORT` / `:PORT`, which mean
/// `127.0.0.1:PORT` (so `--status-addr 9000` never listens beyond the machine by accident).
pub(crate) fn parse_listen(text: &str) -> Result<HostPort, String> {
    let t = text.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port = port_only
            .parse::<u16>()
            .map_err(|_| format!("invalid port `{port_only}` (0-65535)"))?;
        return Ok(HostPort {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port,
        });
    }
    parse(t)
}

/// The addresses of a name (or why there are none), once the lookup has ended.
type Lookup = Option<Result<Vec<IpAddr>, String>>;

thread_local! {
    /// Lookups running on a blocking thread, by name. A lookup of a name that is still being
    /// looked up (an earlier attempt gave up waiting for it) waits for that one instead of
    /// starting another thread: a resolver that never answers costs one thread per name, not
    /// one per attempt of a `--watch` that runs for hours. (When the resolver comes back, the
    /// running lookup gets its answer at its next try, within the resolver's own timeout.)
    static RUNNING: RefCell<HashMap<String, watch::Receiver<Lookup>>> =
        RefCell::new(HashMap::new());
}

/// The socket addresses of `hp`: an IP address as it is, a name through the system resolver on
/// a blocking thread, so that a resolver that never answers cannot hold up the event loop;
/// the caller bounds the wait.
pub(crate) async fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = hp.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hp.port)]);
    }
    let mut lookup = RUNNING.with_borrow_mut(|running| match running.get(&hp.host) {
        Some(rx) if rx.borrow().is_none() && rx.has_changed().is_ok() => rx.clone(),
        _ => {
            let rx = start_lookup(hp.host.clone());
            running.insert(hp.host.clone(), rx.clone());
            rx
        }
    });
    let ended = match lookup.wait_for(Option::is_some).await {
        Ok(done) => done.clone(),
        Err(_) => None,
    };
    RUNNING.with_borrow_mut(|running| {
        if running
            .get(&hp.host)
            .is_some_and(|rx| rx.same_channel(&lookup))
        {
            running.remove(&hp.host);
        }
    });
    let ips = ended.unwrap_or_else(|| Err(format!("cannot resolve {}", hp.host)))?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, hp.port))
        .collect())
}

/// A TCP connection to the first address of `hp` that accepts one; else why the last failed.
pub(crate) async fn connect(hp: &HostPort) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::from("no address");
    for a in resolve(hp).await? {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect: {}", reason(&e)),
        }
    }
    Err(last)
}

/// Looks `host` up on a blocking thread; the receiver gets the result.
fn start_lookup(host: String) -> watch::Receiver<Lookup> {
    let (tx, rx) = watch::channel(None);
    tokio::task::spawn_blocking(move || {
        let result = match (host.as_str(), 0).to_socket_addrs() {
            Ok(addrs) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for a in addrs {
                    if !ips.contains(&a.ip()) {
                        ips.push(a.ip());
                    }
                }
                if ips.is_empty() {
                    Err(format!("cannot resolve {host}"))
                } else {
                    Ok(ips)
                }
            }
            Err(e) => Err(format!("cannot resolve {host}: {}", reason(&e))),
        };
        let _ = tx.send(Some(result));
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> Result<HostPort, String> {
        Ok(HostPort {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn host_port_table() {
        let cases: &[(&str, Result<HostPort, String>)] = &[
            ("127.0.0.1:9000", hp("127.0.0.1", 9000)),
            ("web:80", hp("web", 80)),
            ("[::1]:80", hp("::1", 80)),
            ("0.0.0.0:0", hp("0.0.0.0", 0)),
            ("localhost:65535", hp("localhost", 65535)),
        ];
        for (text, want) in cases {
            assert_eq!(&parse(text), want, "{text}");
        }
        for bad in [
            "",
            "x",
            "127.0.0.1",
            "127.0.0.1:99999",
            "a b:1",
            "http://x:1",
            ":80",
            "[::1]80",
            "[web]:80",
            "user@h:1",
            "h:-1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(hp("::1", 80).unwrap().authority(), "[::1]:80");
        assert_eq!(hp("web", 80).unwrap().authority(), "web:80");
    }

    #[test]
    fn resolution() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ip, a, b) = rt.block_on(async {
            let ip = resolve(&hp("::1", 80).unwrap()).await;
            // Two lookups of one name at once: both answered, nothing left running.
            let (x, y) = (hp("localhost", 81).unwrap(), hp("localhost", 82).unwrap());
            let (a, b) = tokio::join!(resolve(&x), resolve(&y));
            (ip, a, b)
        });
        assert_eq!(ip, Ok(vec!["[::1]:80".parse().unwrap()]));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.iter().all(|s| s.ip().is_loopback() && s.port() == 81),
            "{a:?}"
        );
        assert!(
            b.iter().all(|s| s.ip().is_loopback() && s.port() == 82),
            "{b:?}"
        );
        assert!(RUNNING.with_borrow(HashMap::is_empty));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("9000"), hp("127.0.0.1", 9000));
        assert_eq!(parse_listen(":9000"), hp("127.0.0.1", 9000));
        assert_eq!(parse_listen("0"), hp("127.0.0.1", 0));
        assert_eq!(parse_listen("0.0.0.0:80"), hp("0.0.0.0", 80));
        assert!(parse_listen("99999").is_err());
        assert!(parse_listen("nonsense").is_err());
    }
}
