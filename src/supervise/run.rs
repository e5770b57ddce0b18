//! `procrun run [--] COMMAND...`: one command as a complete container init (like tini).
//!
//! The env files are applied to the command's environment (not procrun's). The command runs in
//! its own process group, which takes the terminal's foreground when stdin is a terminal.
//! Signals to procrun are forwarded to that group; zombies are reaped; when the command exits,
//! leftover descendants get SIGTERM, then SIGKILL after `--timeout`, and procrun exits with the
//! command's code (128+N for a death by signal N).

use super::reaper::{self, Children};
use super::spawn::{self, BaseEnv};
use crate::text::shell_quote;
use nix::sys::signal::{SigSet, Signal};
use std::time::Duration;
use tokio::time::Instant;

/// Runs the command; returns procrun's exit code.
pub(crate) fn run(
    argv: &[String],
    base: &BaseEnv,
    overlay: &[(String, String)],
    mask: &SigSet,
    timeout: Duration,
) -> i32 {
    crate::runtime::block_on_local(
        run_async(argv, base, overlay, mask, timeout),
        crate::error::EXIT_BAD_INPUT,
    )
}

async fn run_async(
    argv: &[String],
    base: &BaseEnv,
    overlay: &[(String, String)],
    mask: &SigSet,
    timeout: Duration,
) -> i32 {
    let Some(mut signals) = super::signals::Signals::open() else {
        return crate::error::EXIT_BAD_INPUT;
    };
    reaper::become_subreaper();
    // honcho joins the shell-quoted words and runs them with `sh -c`; `exec` makes the command
    // itself procrun's child, so signals and exit codes are its own, not an extra shell's.
    if argv.is_empty() {
        return 0;
    }
    let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
    let command = format!("exec {}", words.join(" "));
    let child = match spawn::spawn(
        &spawn::shell(&command),
        base,
        overlay,
        mask,
        spawn::Stdio3::Inherit,
    ) {
        Ok(c) => c,
        Err(e) => {
            crate::warn(&format!("cannot start `{command}`: {e}"));
            return crate::error::EXIT_BAD_INPUT;
        }
    };
    let mut code: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    loop {
        let children = reaper::reap(|pid, status| {
            if pid == child.pid {
                code = crate::error::status_code(&status);
            }
        });
        if code.is_some() {
            // No children means no descendants: orphans come back to procrun (subreaper).
            if children == Children::None {
                break;
            }
            let left = reaper::descendants();
            match deadline {
                None => {
                    for (pid, _) in &left {
                        reaper::signal_pid(*pid, Signal::SIGTERM);
                    }
                    deadline = Some(Instant::now() + timeout);
                }
                Some(d) if Instant::now() >= d && !killed => {
                    for (pid, _) in &left {
                        reaper::signal_pid(*pid, Signal::SIGKILL);
                    }
                    killed = true;
                }
                _ => {}
            }
        }
        tokio::select! {
            signo = signals.recv() => {
                if let Ok(sig) = Signal::try_from(signo)
                    && sig != Signal::SIGCHLD
                    && code.is_none()
                {
                    reaper::signal_group(child.pid, sig);
                }
            }
            // Leftovers' exits arrive as SIGCHLD; only the SIGKILL deadline needs a timer.
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !killed => {}
        }
    }
    code.unwrap_or(0)
}
