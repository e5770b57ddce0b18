//! Readiness checks (`--ready web=tcp`, `--ready web=http:/health`): one local task per
//! instance with a check polls its `PORT` on 127.0.0.1 while it runs and records the result
//! on the board.

use super::board::{Board, State};
use crate::config::Ready;
use crate::net::addr::HostPort;
use crate::net::check::{Expect, Target, check};
use std::rc::Rc;
use std::time::Duration;

/// Pause between readiness checks of one process.
const INTERVAL: Duration = Duration::from_secs(1);
/// Time allowed for one readiness check.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Starts a poller for every instance on the board that has a check (call from within the
/// supervisor's `LocalSet`).
pub(crate) fn spawn_pollers(board: &Rc<Board>) {
    let checks: Vec<(usize, u32, Ready)> = board
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.check.clone().map(|c| (i, e.port, c)))
        .collect();
    for (i, port, ready) in checks {
        tokio::task::spawn_local(poll(Rc::clone(board), i, port, ready));
    }
}

async fn poll(board: Rc<Board>, i: usize, port: u32, ready: Ready) {
    let Ok(port) = u16::try_from(port) else {
        return;
    };
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port,
    };
    let target = match ready {
        Ready::Tcp => Target::Tcp { addr },
        Ready::Http(path) => Target::Http { addr, path },
    };
    let expect = Expect::default();
    loop {
        let state = board.entries().get(i).map(|e| e.state);
        match state {
            None | Some(State::Stopped) => return,
            Some(State::Running) => {
                let ok = check(&target, &expect, TIMEOUT).await.is_ok();
                board.set_ready(i, ok);
            }
            Some(State::NotStarted) => {}
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
