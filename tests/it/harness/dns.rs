//! A DNS server that reads queries and never answers, made the system's resolver for one
//! procrun only: it runs in a private mount namespace where `/etc/resolv.conf` names this
//! server (30 s per try) and `/etc/nsswitch.conf` says `hosts: files dns`, so nothing else
//! answers. Needs root (a mount namespace, port 53 on a loopback address).

use super::{Dir, Launch, tell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub struct SilentDns {
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    dir: Dir,
}

/// Skips `test` visibly, or fails it when `PROCRUN_REQUIRE_PID1=1` (CI runs as root).
fn skip(test: &str, why: &str) {
    if std::env::var("PROCRUN_REQUIRE_PID1").as_deref() == Ok("1") {
        panic!("{test}: {why}, and PROCRUN_REQUIRE_PID1=1 forbids skipping");
    }
    tell(&format!("SKIPPED {test}: {why}"));
}

impl SilentDns {
    /// The server, or `None` after a visible skip when it cannot be set up here.
    pub fn start(test: &str) -> Option<SilentDns> {
        if !super::namespaces_allowed() {
            skip(test, "mount namespaces are not permitted here (needs root)");
            return None;
        }
        // A loopback address of our own: port 53 of 127.0.0.1 may be a local resolver's.
        let pid = std::process::id();
        let mut socket = None;
        for i in 0..64u32 {
            let ip = std::net::Ipv4Addr::new(127, 53, (pid % 251) as u8, (i * 4 + 1) as u8);
            match std::net::UdpSocket::bind((ip, 53)) {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    skip(
                        test,
                        &format!("cannot bind a DNS server on {ip}:53 (needs root): {e}"),
                    );
                    return None;
                }
            }
        }
        let socket = socket.expect("a free loopback address for the DNS server");
        let ip = socket.local_addr().unwrap().ip();
        let dir = Dir::new("silent-dns");
        dir.write(
            "resolv.conf",
            &format!("nameserver {ip}\noptions timeout:30 attempts:5\n"),
        )
        .write("nsswitch.conf", "hosts: files dns\n");
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (Arc::clone(&queries), Arc::clone(&stop));
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if socket.recv_from(&mut buf).is_ok() {
                    q.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Some(SilentDns { queries, stop, dir })
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Makes `l` resolve names through this server only.
    pub fn apply(&self, l: Launch) -> Launch {
        let l = l.bind(self.dir.file("resolv.conf"), "/etc/resolv.conf");
        if std::path::Path::new("/etc/nsswitch.conf").exists() {
            l.bind(self.dir.file("nsswitch.conf"), "/etc/nsswitch.conf")
        } else {
            l
        }
    }
}

impl Drop for SilentDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
