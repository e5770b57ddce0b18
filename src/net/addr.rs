//! `HOST:PORT` addresses: the one parser behind `--status-addr`, `status --addr` and the probe
//! targets, and host-name resolution under a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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

/// The socket addresses of `hp`: an IP address as it is, a name through the system resolver on
/// a blocking thread, so that a resolver that never answers cannot hold up the event loop;
/// the caller bounds the wait.
pub(crate) async fn resolve(hp: &HostPort) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = hp.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hp.port)]);
    }
    match tokio::net::lookup_host((hp.host.as_str(), hp.port)).await {
        Ok(addrs) => {
            let list: Vec<SocketAddr> = addrs.collect();
            if list.is_empty() {
                Err(format!("cannot resolve {}", hp.host))
            } else {
                Ok(list)
            }
        }
        Err(e) => Err(format!("cannot resolve {}: {}", hp.host, reason(&e))),
    }
}

/// An io::Error as a short reason, without the "(os error N)" suffix.
pub(crate) fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
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
    fn listen_addresses() {
        assert_eq!(parse_listen("9000"), hp("127.0.0.1", 9000));
        assert_eq!(parse_listen(":9000"), hp("127.0.0.1", 9000));
        assert_eq!(parse_listen("0"), hp("127.0.0.1", 0));
        assert_eq!(parse_listen("0.0.0.0:80"), hp("0.0.0.0", 80));
        assert!(parse_listen("99999").is_err());
        assert!(parse_listen("nonsense").is_err());
    }
}
