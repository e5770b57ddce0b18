//! `procrun status`: asks a running `procrun start --status-addr ...` for its processes and
//! prints the table the endpoint renders (`GET /status?format=text`), or its JSON with `--json`.

use crate::net::addr::{self, HostPort};
use crate::net::http;
use std::time::Duration;

/// Default address of `procrun status` (and of nothing else: `--status-addr` has no default).
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:9000";
/// Largest answer read.
const BODY_LIMIT: usize = 4 << 20;

/// What `procrun status` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Where the endpoint listens (an unspecified address already replaced by loopback).
    pub(crate) addr: HostPort,
    /// Print the JSON document instead of the table.
    pub(crate) json: bool,
    /// Time to wait for the answer.
    pub(crate) timeout: Duration,
}

/// Runs `procrun status`; returns the exit code.
pub(crate) fn run(opts: &Options) -> i32 {
    let path = if opts.json {
        "/status"
    } else {
        "/status?format=text"
    };
    let authority = opts.addr.authority();
    let fetched = crate::runtime::block_on_local(
        async {
            tokio::time::timeout(opts.timeout, async {
                let stream = addr::connect(&opts.addr).await?;
                http::get(stream, &authority, path, true, BODY_LIMIT).await
            })
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
        },
        Err("cannot start the event loop".into()),
    );
    let body = match fetched {
        Ok(r) if r.status == 200 => r.body,
        Ok(r) => {
            crate::warn(&format!(
                "status: http://{authority}{path} answered {}",
                r.status
            ));
            return 1;
        }
        Err(e) => {
            crate::warn(&format!(
                "status: cannot reach procrun's status endpoint at {authority}: {e} \
                 (is `procrun start --status-addr {authority}` running?)"
            ));
            return 1;
        }
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&body);
    let _ = stdout.flush();
    0
}
