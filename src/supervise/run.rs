//! `procrun run [--] COMMAND...`: one command as a complete container init (like tini).
//!
//! The command is exec'd directly, found in the `PATH` it will see, so an image needs no
//! `/bin/sh`; a single argument with shell syntax (`procrun run "migrate && serve"`) runs as
//! `/bin/sh -c ARGUMENT`. The env files are applied to the command's environment (not
//! procrun's). The command runs in its own process group, which takes the terminal's foreground
//! when stdin is a terminal. Every catchable signal procrun receives is forwarded to that group;
//! zombies are reaped; when the command exits, leftover descendants get SIGTERM, then SIGKILL
//! after `--timeout`, and procrun exits with the command's code (128+N for a death by signal N;
//! 127 or 126, with the reason on stderr, when it cannot be exec'd).

use super::reaper::{self, Children};
use super::signals::Signals;
use super::spawn::{self, BaseEnv};
use nix::sys::signal::{SigSet, Signal};
use std::time::Duration;
use tokio::time::Instant;

/// Default `PATH` when neither procrun's environment nor the env files set one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Bytes that make a single argument a shell command rather than a program name.
fn has_shell_syntax(word: &str) -> bool {
    word.bytes()
        .any(|b| b.is_ascii_whitespace() || b"|&;<>()$`\\\"'*?[]#~=%{}!".contains(&b))
}

/// The program and argv to exec for `argv`.
fn command(argv: &[String], path: &str) -> (String, Vec<String>) {
    match argv {
        [one] if has_shell_syntax(one) => (
            spawn::SHELL.to_string(),
            vec![spawn::SHELL.into(), "-c".into(), one.clone()],
        ),
        _ => {
            // The command line requires a command; an empty one still fails cleanly (ENOENT).
            let name = argv.first().map(String::as_str).unwrap_or("");
            let program = spawn::find_program(name, path).unwrap_or_else(|| name.to_string());
            (program, argv.to_vec())
        }
    }
}

/// Runs the command; returns procrun's exit code.
pub(crate) fn run(
    argv: &[String],
    base: &BaseEnv,
    overlay: &[(String, String)],
    path: Option<&str>,
    mask: &SigSet,
    timeout: Duration,
) -> i32 {
    crate::runtime::block_on_local(
        run_async(argv, base, overlay, path, mask, timeout),
        crate::error::EXIT_BAD_INPUT,
    )
}

async fn run_async(
    argv: &[String],
    base: &BaseEnv,
    overlay: &[(String, String)],
    path: Option<&str>,
    mask: &SigSet,
    timeout: Duration,
) -> i32 {
    let mut signals = match Signals::with_sigpipe() {
        Ok(s) => s,
        Err(e) => {
            crate::warn(&format!("cannot read signals: {e}"));
            return crate::error::EXIT_BAD_INPUT;
        }
    };
    reaper::become_subreaper();
    let (program, words) = command(argv, path.unwrap_or(DEFAULT_PATH));
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let spawned = spawn::ExecErrors::new().and_then(|errors| {
        spawn::spawn(
            &program,
            &words,
            base,
            overlay,
            mask,
            spawn::Stdio3::Inherit,
            &errors,
        )
        .map(|child| (child, errors))
    });
    let (child, errors) = match spawned {
        Ok(c) => c,
        Err(e) => {
            crate::warn(&format!("cannot start {program}: {e}"));
            return crate::error::EXIT_BAD_INPUT;
        }
    };
    let mut code: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    loop {
        let children = reaper::reap(|pid, status| {
            if pid == child.pid {
                code = reaper::exit_status(&status).map(super::machine::Status::code);
            }
        });
        if matches!(code, Some(126 | 127))
            && let Some((_, e)) = errors.take().into_iter().find(|(p, _)| *p == child.pid)
        {
            crate::warn(&format!(
                "cannot exec {program}: {}",
                crate::error::reason(&e)
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_exec_or_shell() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], &str, &[&str])] = &[
            (&["sh", "-c", "exit 7"], "/bin/sh", &["sh", "-c", "exit 7"]),
            (&["/app/bin"], "/app/bin", &["/app/bin"]),
            (
                &["no-such-program-x"],
                "no-such-program-x",
                &["no-such-program-x"],
            ),
            (
                &["migrate && serve"],
                "/bin/sh",
                &["/bin/sh", "-c", "migrate && serve"],
            ),
            (&["echo $HOME"], "/bin/sh", &["/bin/sh", "-c", "echo $HOME"]),
            // Several words: never a shell, whatever they contain.
            (&["echo", "$HOME"], "/bin/echo", &["echo", "$HOME"]),
        ];
        for (args, program, words) in cases {
            let (p, w) = command(&argv(args), "/nonexistent:/bin");
            assert_eq!((p.as_str(), w), (*program, argv(words)), "{args:?}");
        }
    }
}
