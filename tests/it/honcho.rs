//! Each case folder holds what honcho 2.0.0 was observed to do (`cmd`, `Procfile`, `.env`,
//! `stdout`, `exit_code`). Where procrun deliberately differs (see README "Differences from
//! honcho"), `procrun.stdout` / `procrun.exit_code` hold procrun's documented behaviour and
//! `procrun.md` says why; those take precedence. Signals that honcho's runs sent at fixed times
//! are sent here when the event they depend on has happened.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases/honcho")
        .join(name)
}

fn read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

/// Builds the command of a case: leading `VAR=value` words become environment variables, and
/// `honcho` is replaced by procrun (exec'd by `sh`, so the pid we signal is procrun's).
fn command(dir: &Path) -> Launch {
    let cmd = read(dir, "cmd").expect("cmd file");
    let mut words = cmd.trim_end_matches('\n');
    let mut vars = Vec::new();
    while let Some((first, rest)) = words.split_once(' ') {
        match first.split_once('=') {
            Some((k, v))
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                vars.push((k.to_string(), v.to_string()));
                words = rest;
            }
            _ => break,
        }
    }
    let rest = words
        .strip_prefix("honcho")
        .expect("command starts with honcho");
    Launch::shell(dir, &format!("exec '{BIN}'{rest}")).envs(vars)
}

fn expected(dir: &Path) -> (String, i32) {
    let stdout = read(dir, "procrun.stdout")
        .or_else(|| read(dir, "stdout"))
        .unwrap_or_default();
    let code = read(dir, "procrun.exit_code")
        .or_else(|| read(dir, "exit_code"))
        .unwrap();
    (stdout, code.trim().parse().unwrap())
}

/// Sends a case's signals when the events they depend on have happened.
fn drive(name: &str, run: &Running) {
    let wait = |line: &str| run.wait_for(line, TIMEOUT);
    match name {
        "35-ctrl-c-sigint-to-group" => {
            wait("web ready");
            // To procrun's whole process group, as a terminal's Ctrl-C does.
            run.signal_group(Signal::SIGINT);
        }
        "37-signal-during-grace-overrides-rc" => {
            wait("sending SIGTERM to worker.1");
            run.signal(Signal::SIGTERM);
        }
        "38-sigint-no-escalation" => {
            // web's shell runs `trap '' TERM` first and prints nothing: wait until /proc shows
            // SIGTERM ignored, or procrun's SIGTERM could kill it before the trap is set.
            let web = run.pid_of("web.1");
            assert!(
                wait_ignores(web, libc::SIGTERM, TIMEOUT),
                "web.1 never ignored SIGTERM\n{}",
                run.out()
            );
            run.signal(Signal::SIGINT);
            let first = std::time::Instant::now();
            wait("sending SIGTERM to web.1");
            // A second Ctrl-C, not the same one delivered twice.
            past_same_signal_window(first);
            run.signal(Signal::SIGINT);
        }
        "39-sighup-kills-honcho" => {
            wait("worker.1 started");
            run.signal(Signal::SIGHUP);
        }
        _ => {}
    }
}

fn check(name: &str) {
    let dir = case_dir(name);
    let (want_out, want_code) = expected(&dir);
    // The cases replay honcho's recorded timelines, in which children print 0.25-0.3 s apart.
    // With a real-time priority (as root) CPU load from other processes cannot reorder them;
    // the test's own threads too (the output readers start later and inherit it), so that
    // procrun never waits for a starved reader.
    set_realtime();
    let command = |dir: &Path| command(dir).realtime();
    let (code, out) = if dir.join("tty").exists() {
        // stdout on a raw-mode pseudo-terminal, as the corpus was recorded.
        let (code, out, _) = command(&dir).stdout(Out::Pty).spawn().finish(TIMEOUT);
        (code, out)
    } else {
        let run = command(&dir).spawn();
        drive(name, &run);
        let (code, out, err) = run.finish(TIMEOUT);
        if code != want_code {
            eprintln!("stderr:\n{err}");
        }
        (code, out)
    };
    // In case 36 procrun stops web.1 200 ms after its shell exits, which races with worker.1's
    // single line at 0.5 s on a loaded machine: that line may or may not come first.
    let racy = |l: &String| !(name.starts_with("36-") && l.ends_with("| worker tick"));
    // The harness's tag is in every child's environment, not in honcho's.
    let tag = |l: &String| !l.contains(&format!("| {TAG_VAR}="));
    let got: Vec<String> = sort_racy_runs(&normalise(&out, &dir))
        .into_iter()
        .filter(racy)
        .filter(tag)
        .collect();
    let want: Vec<String> = sort_racy_runs(&want_out).into_iter().filter(racy).collect();
    assert_eq!(got, want, "case {name}: stdout differs\n--- got:\n{out}");
    assert_eq!(
        code, want_code,
        "case {name}: exit code\n--- stdout:\n{out}"
    );
}

macro_rules! cases {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { check($name); })*
    };
}

cases! {
    start_basic => "01-start-basic",
    check_procfile_grammar => "02-check-procfile-grammar",
    start_duplicate_names => "03-start-duplicate-names",
    procfile_crlf_cr_tabs => "04-procfile-crlf-cr-tabs",
    procfile_backslash_continuation => "05-procfile-backslash-continuation",
    procfile_utf8_bom => "06-procfile-utf8-bom",
    procfile_missing => "07-procfile-missing",
    docker_style_root_options => "08-docker-style-root-options",
    env_basic_syntax => "11-env-basic-syntax",
    env_escapes => "12-env-escapes",
    env_apostrophe => "13-env-apostrophe-crash",
    env_multiline_value => "14-env-multiline-value-crash",
    start_unknown_process => "17-start-unknown-process",
    concurrency_and_ports => "19-concurrency-and-ports",
    no_prefix => "22-no-prefix",
    run_exit_code_and_env => "23-run-exit-code-and-env",
    child_environment => "24-child-environment",
    output_line_splitting => "25-output-line-splitting",
    output_invalid_utf8 => "26-output-invalid-utf8",
    output_partial_line => "27-output-partial-line",
    output_colour_tty => "28-output-colour-tty",
    output_no_colour_tty => "29-output-no-colour-tty",
    exit_code_child_killed_by_signal => "32-exit-code-child-killed-by-signal",
    sigkill_after_grace => "33-sigkill-after-grace",
    ctrl_c_sigint_to_group => "35-ctrl-c-sigint-to-group",
    background_job_holds_the_pipe => "36-background-holds-pipe",
    signal_during_grace_overrides_rc => "37-signal-during-grace-overrides-rc",
    second_sigint_escalates => "38-sigint-no-escalation",
    sighup_is_graceful => "39-sighup-kills-honcho",
}
