//! `procrun probe`: one-shot and watch-mode health probes (for Docker `HEALTHCHECK` and a
//! watching sidecar).
//!
//! Everything runs on one current-thread tokio runtime: targets of one round are probed
//! concurrently as local tasks, host names are resolved off the event loop under the attempt's
//! deadline, and SIGINT/SIGTERM (blocked since `main`) are read from the signalfd, so a watching
//! sidecar stops at once.

use crate::net::check::{Expect, Target, check};
use crate::supervise::signals::Signals;
use std::rc::Rc;
use std::time::Duration;

/// What `procrun probe` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The targets as given (for messages) and parsed.
    pub(crate) targets: Vec<(String, Target)>,
    /// Time allowed for each attempt.
    pub(crate) timeout: Duration,
    /// Attempts after the first (one-shot mode).
    pub(crate) retries: u32,
    /// Pause between attempts (`None`: 1 s, or 10 s with `watch`).
    pub(crate) interval: Option<Duration>,
    pub(crate) expect: Expect,
    /// Keep probing; exit 1 after `failures` consecutive failed rounds.
    pub(crate) watch: bool,
    pub(crate) failures: u32,
}

/// SIGINT, SIGTERM, SIGHUP or SIGQUIT: its number. Never returns without signals.
async fn stop_signal(signals: &mut Option<Signals>) -> i32 {
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

/// Probes the targets at `indexes` concurrently; results in the order given.
async fn round(opts: &Rc<Options>, indexes: &[usize]) -> Vec<(usize, Result<(), String>)> {
    let mut set = tokio::task::JoinSet::new();
    for &i in indexes {
        let opts = Rc::clone(opts);
        set.spawn_local(async move {
            (
                i,
                check(&opts.targets[i].1, &opts.expect, opts.timeout).await,
            )
        });
    }
    let mut done = Vec::with_capacity(indexes.len());
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            done.push(r);
        }
    }
    settle(indexes, done)
}

/// The results of a round in target order; a target whose check never reported (its task
/// failed) counts as failed, never as passed.
fn settle(
    indexes: &[usize],
    mut done: Vec<(usize, Result<(), String>)>,
) -> Vec<(usize, Result<(), String>)> {
    for &i in indexes {
        if !done.iter().any(|(j, _)| *j == i) {
            done.push((i, Err("the check did not complete".into())));
        }
    }
    done.sort_by_key(|(i, _)| *i);
    done
}

fn log(message: &str) {
    let (secs, millis) = crate::time::now();
    crate::warn(&format!(
        "{} probe: {message}",
        crate::time::rfc3339_utc(secs, millis)
    ));
}

/// Runs the probe; returns the exit code.
pub(crate) fn run(opts: Options) -> i32 {
    crate::runtime::block_on_local(run_async(Rc::new(opts)), crate::error::EXIT_BAD_INPUT)
}

async fn run_async(opts: Rc<Options>) -> i32 {
    let mut signals = Signals::new().ok();
    if opts.watch {
        return watch(&opts, &mut signals).await;
    }
    let interval = opts.interval.unwrap_or(Duration::from_secs(1));
    let mut pending: Vec<usize> = (0..opts.targets.len()).collect();
    let mut failed = Vec::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            tokio::select! {
                signo = stop_signal(&mut signals) => return 128 + signo,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let results = tokio::select! {
            signo = stop_signal(&mut signals) => return 128 + signo,
            r = round(&opts, &pending) => r,
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
        crate::warn(&format!("probe: {}: {e}", opts.targets[i].0));
    }
    1
}

async fn watch(opts: &Rc<Options>, signals: &mut Option<Signals>) -> i32 {
    let interval = opts.interval.unwrap_or(Duration::from_secs(10));
    let all: Vec<usize> = (0..opts.targets.len()).collect();
    let mut was_failing = vec![false; opts.targets.len()];
    let mut streak = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let results = tokio::select! {
            _ = stop_signal(signals) => return 0,
            r = round(opts, &all) => r,
        };
        let any_failed = results.iter().any(|(_, r)| r.is_err());
        streak = if any_failed { streak + 1 } else { 0 };
        for (i, r) in results {
            let raw = &opts.targets[i].0;
            match r {
                Err(e) => {
                    log(&format!(
                        "{raw}: {e} (failure {streak} of {})",
                        opts.failures
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
        if streak >= opts.failures {
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
    fn a_check_that_never_reported_is_a_failure() {
        let got = settle(&[0, 2, 5], vec![(5, Ok(())), (0, Err("refused".into()))]);
        assert_eq!(
            got,
            vec![
                (0, Err("refused".to_string())),
                (2, Err("the check did not complete".to_string())),
                (5, Ok(())),
            ]
        );
    }
}
