//! `procrun start`, `check`, `run` and the CLI, against the real binary: lifecycle, signals,
//! exit codes, configuration sources and error messages.

mod support;

use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(20);

fn dir(procfile: &str) -> TempDir {
    let d = TempDir::new("start");
    d.write("Procfile", procfile);
    d
}

fn run(d: &TempDir, args: &[&str]) -> (i32, String, String) {
    spawn(procrun(d.path(), args)).finish(T)
}

fn lines(out: &str) -> Vec<String> {
    normalise(out, std::path::Path::new("/nonexistent"))
        .lines()
        .map(|l| l.trim_start_matches("HH:MM:SS ").to_string())
        .collect()
}

#[test]
fn sigterm_stops_everything_with_143() {
    let d = dir(
        "web: trap 'echo web got TERM; exit 0' TERM; echo web ready; while :; do sleep 1 & wait; done\nworker: echo worker ready; exec sleep 30\n",
    );
    let r = spawn(procrun(d.path(), &["start"]));
    r.wait_for("web ready", T);
    r.wait_for("worker ready", T);
    r.signal(Signal::SIGTERM);
    let start = Instant::now();
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let l = lines(&out);
    assert!(
        l.contains(&"system   | SIGTERM received".to_string()),
        "{out}"
    );
    assert!(l.contains(&"web.1    | web got TERM".to_string()), "{out}");
    assert!(
        l.contains(&"system   | web.1 stopped (rc=0)".to_string()),
        "{out}"
    );
    assert!(
        l.contains(&"system   | worker.1 stopped (rc=-15)".to_string()),
        "{out}"
    );
    assert_eq!(out.matches("sending SIGTERM").count(), 2, "{out}");
}

#[test]
fn sigint_gives_130() {
    let d = dir("web: echo ready; exec sleep 30\n");
    let r = spawn(procrun(d.path(), &["start"]));
    r.wait_for("ready", T);
    r.signal(Signal::SIGINT);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("SIGINT received"), "{out}");
}

#[test]
fn child_ignoring_sigterm_is_killed_after_timeout() {
    let d = dir("web: trap '' TERM; echo ready; while :; do sleep 1; done\n");
    let r = spawn(procrun(d.path(), &["start", "-t", "0.5"]));
    r.wait_for("ready", T);
    let start = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    let took = start.elapsed();
    assert_eq!(code, 143, "{out}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500 + 1000),
        "took {took:?}"
    );
    assert_eq!(out.matches("sending SIGKILL to web.1").count(), 1, "{out}");
    assert!(out.contains("web.1 stopped (rc=-9)"), "{out}");
}

#[test]
fn escalation_also_after_a_process_exit() {
    let d = dir(
        "a: echo a-ready; sleep 0.2; exit 3\nb: trap '' TERM; echo b-ready; while :; do sleep 1; done\n",
    );
    let (code, out, _) = run(&d, &["start", "-t", "0.5"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("sending SIGKILL to b.1"), "{out}");
}

#[test]
fn second_signal_during_grace_kills_at_once() {
    let d = dir("web: trap '' TERM INT; echo ready; while :; do sleep 1; done\n");
    let r = spawn(procrun(d.path(), &["start", "-t", "30"]));
    r.wait_for("ready", T);
    r.signal(Signal::SIGTERM);
    r.wait_for("sending SIGTERM to web.1", T);
    let start = Instant::now();
    r.signal(Signal::SIGINT);
    let (code, out, _) = r.finish(T);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(code, 130, "the last signal sets the code: {out}");
    assert!(out.contains("sending SIGKILL to web.1"), "{out}");
}

#[test]
fn child_killed_by_signal_gives_128_plus_n() {
    for (sig, code) in [("KILL", 137), ("TERM", 143), ("SEGV", 139)] {
        let d = dir(&format!(
            "web: sleep 0.1; kill -{sig} $$\nother: exec sleep 30\n"
        ));
        let (got, out, _) = run(&d, &["start"]);
        assert_eq!(got, code, "{sig}: {out}");
    }
}

#[test]
fn exit_codes_pass_through() {
    for n in [0, 1, 2, 42, 126, 127, 255] {
        let d = dir(&format!("web: exit {n}\n"));
        assert_eq!(run(&d, &["start"]).0, n);
    }
    let d = dir("web: /no/such/command\n");
    assert_eq!(run(&d, &["start"]).0, 127);
}

#[test]
fn usr1_is_forwarded_and_the_run_goes_on() {
    let d = dir("web: trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.1; done\n");
    let r = spawn(procrun(d.path(), &["start"]));
    r.wait_for("ready", T);
    r.signal(Signal::SIGUSR1);
    r.wait_for("got USR1", T);
    r.signal(Signal::SIGTERM);
    assert_eq!(r.finish(T).0, 143);
}

#[test]
fn last_output_is_never_lost() {
    let d = dir(
        "web: i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line $i; done; printf 'no newline at the end'; exit 4\nidle: exec sleep 30\n",
    );
    let (code, out, _) = run(&d, &["start"]);
    assert_eq!(code, 4);
    for i in 1..=3000 {
        assert!(
            out.contains(&format!("web.1  | line {i}\n")),
            "line {i} missing"
        );
    }
    let l = lines(&out);
    let tail = l
        .iter()
        .position(|x| x == "web.1  | no newline at the end")
        .expect("partial line");
    let stopped = l
        .iter()
        .position(|x| x == "system | web.1 stopped (rc=4)")
        .unwrap();
    assert!(tail < stopped);
}

#[test]
fn raw_bytes_pass_through() {
    let d = dir("web: printf 'bad:\\351\\377 ok:\\303\\251 cr\\r\\n'\n");
    let r = spawn(procrun(d.path(), &["start", "--no-prefix"]));
    r.wait_for("stopped", T);
    let out = r.out.lock().unwrap().clone();
    assert!(
        out.windows(14).any(|w| w == b"bad:\xe9\xff ok:\xc3\xa9 c"),
        "{out:?}"
    );
    assert!(
        out.windows(3).any(|w| w == b"cr\n"),
        "the \\r before \\n is dropped"
    );
}

#[test]
fn env_values_match_honcho_except_documented() {
    let d = dir("web: env | LC_ALL=C sort\n");
    let env = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/honcho/11-env-basic-syntax/.env"
    ))
    .unwrap();
    // Drop the three lines procrun rejects (they have their own test).
    let env: String = env
        .lines()
        .filter(|l| !l.starts_with("DASH-") && !l.starts_with("1DIGIT") && !l.starts_with("NOT_AN"))
        .map(|l| format!("{l}\n"))
        .collect();
    d.write(".env", &env);
    let (code, out, _) = run(&d, &["start", "--no-prefix"]);
    assert_eq!(code, 0, "{out}");
    let expect = [
        "BRACES=${PLAIN}",
        "DOLLAR=$HOME/x",
        "DOUBLE=hello big world",
        "DUP=second",
        "EMPTY_DQ=",
        "EMPTY_SQ=",
        "EQUALS=a=b=c",
        "EXPORTED=1",
        "HASH_NO_SPACE=abc",
        "HASH_QUOTED=abc # def",
        "INDENTED=yes",
        "INLINE_COMMENT=value",
        "LEADING_EQ==x",
        "MIXED=a bc de",
        "PLAIN=value",
        "SINGLE=hello big world",
        "SPACED=spaced around equals",
        "TABBED=tab",
        "TWO=1 THREE=3",
        "UNQUOTED_WORDS=hello big world",
        "URL=postgres://user:pw@host:5432/db?sslmode=require&x=1",
        "lower_case=ok",
    ];
    for e in expect {
        assert!(out.lines().any(|l| l == e), "missing {e:?} in\n{out}");
    }
    assert!(
        !out.lines().any(|l| l.starts_with("EMPTY=")),
        "KEY= leaves KEY unset"
    );
}

#[test]
fn bad_input_is_a_one_line_error_naming_file_and_line() {
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "web: a\n",
            "A=1\nMY-VAR=1\n",
            &["start"],
            ".env:2:3: `-` is not allowed in a key",
        ),
        (
            "web: a\n",
            "X=\"open\n",
            &["check"],
            ".env:1:3: unterminated double-quoted value of `X`",
        ),
        (
            "web: a\nworker: b\nweb: c\n",
            "",
            &["start"],
            "Procfile:3: process names must be unique within a Procfile: `web` is already defined on line 1",
        ),
        (
            "web: a\n",
            "",
            &["start", "-c", "web"],
            "invalid value for concurrency: 'web'",
        ),
        (
            "web: a\n",
            "",
            &["start", "-p", "abc"],
            "invalid value for port: 'abc'",
        ),
        (
            "web: a\n",
            "PORT=x\n",
            &["start", "-p", "6000"],
            "invalid value for port: PORT in the env file is not 1-65535",
        ),
        (
            "web: a\n",
            "",
            &["start", "nope"],
            "Process type 'nope' does not exist in Procfile",
        ),
        (
            "web: a\n",
            "",
            &["-f", "missing", "start"],
            "Procfile does not exist: missing",
        ),
    ];
    for (procfile, env, args, message) in cases {
        let d = dir(procfile);
        d.write(".env", env);
        let (code, out, err) = run(&d, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(out, "", "nothing started");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(message),
            "{args:?}: want {message:?}, got {err}"
        );
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn non_utf8_procfile_is_an_error() {
    let d = TempDir::new("utf8");
    std::fs::write(d.path().join("Procfile"), b"web: echo \xff\n").unwrap();
    let (code, _, err) = run(&d, &["check"]);
    assert_eq!(code, 1);
    assert!(err.contains("Procfile: not valid UTF-8"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let d = dir("web: a\n");
    for args in [
        &["start", "--no-color"][..],
        &["frobnicate"],
        &[],
        &["start", "--no"],
        &["start", "-p"],
    ] {
        let (code, _, err) = run(&d, args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, out, _) = run(&d, &["--version"]);
    assert_eq!((code, out.starts_with("procrun ")), (0, true));
}

#[test]
fn check_reports_names_and_files_and_warnings() {
    let d = dir("\u{feff}web: a\n  indented: x\nworker: b\n");
    let (code, out, err) = run(&d, &["check"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(
        err.contains("Valid procfile detected (web, worker)"),
        "{err}"
    );
    assert!(err.contains("warning: Procfile:2: ignored"), "{err}");
    assert!(err.contains("env file: .env (not found, skipped)"), "{err}");
}

#[test]
fn env_name_convention_and_procrun_variables() {
    let d = TempDir::new("envname");
    d.write(
        "environments/prod/Procfile",
        "web: echo \"APP=$APP PORT=$PORT\"\n",
    );
    d.write("environments/prod/.env", "APP=prod-app\n");
    let mut c = procrun(d.path(), &["start", "--no-prefix"]);
    c.env("ENV_NAME", "prod").env("PROCRUN_PORT", "7000");
    let (code, out, err) = spawn(c).finish(T);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("APP=prod-app PORT=7000"), "{out}");
    let mut c = procrun(d.path(), &["check"]);
    c.env("ENV_NAME", "staging");
    let (code, _, err) = spawn(c).finish(T);
    assert_eq!(code, 1);
    assert!(err.contains("environments/staging/Procfile"), "{err}");
}

#[test]
fn procfile_from_env_file_beats_os_environment() {
    let d = TempDir::new("pfenv");
    d.write("A", "a: echo from-A\n")
        .write("B", "b: echo from-B\n")
        .write(".env", "PROCFILE=B\n");
    let mut c = procrun(d.path(), &["start", "--no-prefix"]);
    c.env("PROCFILE", "A");
    let (_, out, _) = spawn(c).finish(T);
    assert!(out.contains("from-B"), "{out}");
}

#[test]
fn quiet_and_json_and_no_timestamp() {
    let d = dir("web: echo 'say \"hi\"'\nnoisy: echo noise; exec sleep 30\n");
    let (_, out, _) = run(&d, &["start", "-q", "noisy", "--no-timestamp"]);
    assert!(
        out.contains("\nweb.1   | say \"hi\"\n") || out.starts_with("web.1"),
        "{out}"
    );
    assert!(!out.contains("noise"), "{out}");
    assert!(out.contains("system  | noisy.1 started"), "{out}");
    let (_, out, _) = run(&d, &["start", "--log-format", "json"]);
    let line = out
        .lines()
        .find(|l| l.contains("\"name\":\"web.1\""))
        .expect(&out);
    let re = regex::Regex::new(r#"^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","name":"web.1","pid":\d+,"text":"say \\"hi\\""\}$"#).unwrap();
    assert!(re.is_match(line), "{line}");
    let (_, out, _) = run(&d, &["start", "--timestamp-format", "rfc3339"]);
    assert!(
        regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web.1   \| say")
            .unwrap()
            .is_match(&out),
        "{out}"
    );
}

#[test]
fn colour_can_be_forced_and_no_color_is_respected() {
    let d = dir("web: echo hi\n");
    let (_, out, _) = run(&d, &["start", "--colour", "always"]);
    assert!(out.contains("\x1b[0m\x1b[36m"), "{out:?}");
    let mut c = procrun(d.path(), &["start", "--colour", "auto"]);
    c.env("NO_COLOR", "1");
    assert!(!spawn(c).finish(T).1.contains('\x1b'));
}

#[test]
fn empty_procfile_exits_0_silently() {
    let d = dir("# nothing\n");
    assert_eq!(run(&d, &["start"]), (0, String::new(), String::new()));
    let d = dir("web: a\n");
    assert_eq!(run(&d, &["start", "-c", "web=0"]).0, 0);
}

#[test]
fn run_passes_env_and_exit_code() {
    let d = dir("");
    d.write(".env", "A='x y'\n");
    let (code, out, _) = run(&d, &["run", "sh", "-c", "echo \"A=$A\"; exit 7"]);
    assert_eq!((code, out.as_str()), (7, "A=x y\n"));
    let (code, _, _) = run(&d, &["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(code, 143);
    let r = spawn(procrun(
        d.path(),
        &[
            "run",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    ));
    r.wait_for("ready", T);
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("got TERM"));
}

#[test]
fn children_get_the_inherited_signal_mask_not_procruns() {
    let d = dir("web: grep -E '^Sig(Blk|Ign)' /proc/self/status\n");
    let (_, out, _) = run(&d, &["start", "--no-prefix"]);
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    let sigign = |out: &str| {
        let hex = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .expect(out);
        u64::from_str_radix(hex.trim(), 16).unwrap()
    };
    const PIPE: u64 = 1 << (libc::SIGPIPE - 1);
    assert_eq!(sigign(&out) & PIPE, 0, "SIGPIPE is default again: {out}");
    // Started with SIGPIPE ignored, procrun hands that on (as tini does).
    let mut c = procrun(d.path(), &["start", "--no-prefix"]);
    use std::os::unix::process::CommandExt;
    // SAFETY: only `signal`, async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            Ok(())
        });
    }
    let (_, out, _) = spawn(c).finish(T);
    assert_eq!(sigign(&out) & PIPE, PIPE, "{out}");
}

/// T34: a stopped child (SIGSTOP, Ctrl-Z) is continued after SIGTERM so it can act on it.
#[test]
fn stopped_child_is_continued_after_sigterm() {
    let d =
        dir("web: trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done\n");
    let r = spawn(procrun(d.path(), &["start", "-t", "20"]));
    r.wait_for("ready", T);
    let out = r.stdout();
    let pid: i32 = out
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    // Wait until the shell is really stopped.
    let end = Instant::now() + T;
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") T ")
    {
        assert!(Instant::now() < end, "child never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    r.signal(Signal::SIGTERM);
    let (code, out, _) = r.finish(T);
    assert_eq!(code, 143, "{out}");
    assert!(out.contains("got TERM"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited for the grace: {:?}",
        start.elapsed()
    );
}

/// `-d` resolves the Procfile and env files only: children keep procrun's cwd. The default
/// `.env` is the app root's, not the one beside a `-f` Procfile (honcho §2.5).
#[test]
fn app_root_and_env_file_lookup() {
    let d = TempDir::new("approot");
    d.write("sub/Procfile", "web: pwd; echo \"X=$X\"\n")
        .write("sub/.env", "X=sub\n")
        .write(".env", "X=root\n");
    let cwd = d.path().canonicalize().unwrap().display().to_string();
    let (_, out, _) = run(&d, &["-d", "sub", "start", "--no-prefix"]);
    assert!(
        out.contains(&format!("\n{cwd}\n")) && out.contains("X=sub"),
        "{out}"
    );
    let (_, out, _) = run(&d, &["-f", "sub/Procfile", "start", "--no-prefix"]);
    assert!(out.contains("X=root"), "{out}");
}

/// `-e a,b`: later files win, missing ones are skipped, names are trimmed; `.env` is then not read.
#[test]
fn env_file_list_merges_left_to_right() {
    let d = dir("web: echo \"A=$A B=$B C=${C-unset}\"\n");
    d.write("e1", "A=first\nB=b\n")
        .write("e2", "A=second\n")
        .write(".env", "C=default\n");
    let (code, out, _) = run(&d, &["start", "--no-prefix", "-e", "e1, missing ,e2"]);
    assert_eq!(code, 0);
    assert!(out.contains("A=second B=b C=unset"), "{out}");
}

/// OS environment < env files, which also override HONCHO_PROCESS_NAME; PORT is always set.
#[test]
fn env_precedence_in_children() {
    let d = dir("web: echo \"FOO=$FOO NAME=$HONCHO_PROCESS_NAME PORT=$PORT\"\n");
    d.write(".env", "FOO=file\nHONCHO_PROCESS_NAME=custom\n");
    let mut c = procrun(d.path(), &["start", "--no-prefix"]);
    c.env("FOO", "os").env("PORT", "6000");
    let (_, out, _) = spawn(c).finish(T);
    assert!(out.contains("FOO=file NAME=custom PORT=6000"), "{out}");
}

/// `run`: leftovers of the command get SIGTERM when it exits, SIGKILL after `--timeout`.
#[test]
fn run_terminates_leftovers_then_exits_with_the_commands_code() {
    let d = dir("");
    let start = Instant::now();
    let (code, _, _) = run(&d, &["run", "-t", "0.5", "sh", "-c", "sleep 30 & exit 3"]);
    assert_eq!(code, 3);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let (code, _, _) = run(
        &d,
        &[
            "run",
            "-t",
            "0.5",
            "sh",
            "-c",
            "(trap '' TERM; sleep 30) & exit 4",
        ],
    );
    assert_eq!(code, 4);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
