//! Inputs fail closed and are validated before anything starts (`check` runs the same
//! validation), env-file values never show in messages, reading the inputs stays interruptible,
//! `PROCRUN_*` variables, honcho's CLI habits, and the process-role options.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// A directory with a Procfile whose processes leave `started` behind if they ever run.
fn dir(procfile: &str) -> Dir {
    Dir::with_procfile("inputs", procfile)
}

fn run(d: &Dir, args: &[&str]) -> (i32, String, String) {
    procrun(d.path(), args).run()
}

fn run_env(d: &Dir, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    procrun(d.path(), args)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .run()
}

/// Makes `path` a file procrun cannot read: mode 000, and when the tests run as root (who reads
/// anything) procrun runs as `nobody`, from a copy of the binary in `bin` (the build directory
/// may not be open to others).
fn unreadable(l: Launch, path: &std::path::Path, bin: &Dir) -> Launch {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if !nix::unistd::geteuid().is_root() {
        return l;
    }
    let copy = bin.path().join("procrun");
    if !copy.exists() {
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::copy(BIN, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    l.program(copy).user(65534, 65534)
}

#[test]
fn existing_but_unreadable_inputs_are_errors_missing_env_files_are_skipped() {
    let bin = Dir::new("bin");
    // (what is broken, the message)
    let cases: &[(&str, &str)] = &[
        (
            ".env is a directory",
            "cannot read env file .env: Is a directory (os error 21)",
        ),
        (
            ".env is unreadable",
            "cannot read env file .env: Permission denied (os error 13)",
        ),
        (
            "Procfile is a directory",
            "cannot read Procfile Procfile: Is a directory (os error 21)",
        ),
        (
            "Procfile is unreadable",
            "cannot read Procfile Procfile: Permission denied (os error 13)",
        ),
        (
            "-e e/x below a file",
            "cannot read env file e/x: Not a directory (os error 20)",
        ),
    ];
    for (case, want) in cases {
        for command in ["check", "start"] {
            let d = Dir::new("unreadable");
            // World-writable so that `nobody` may create `started`.
            std::fs::set_permissions(
                d.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .unwrap();
            let mut args = vec![command];
            match *case {
                ".env is a directory" => {
                    std::fs::create_dir(d.path().join(".env")).unwrap();
                }
                "Procfile is a directory" => {
                    std::fs::create_dir(d.path().join("Procfile")).unwrap();
                }
                "-e e/x below a file" => {
                    d.write("e", "");
                    args = vec!["-e", "e/x", command];
                }
                _ => {
                    d.write(".env", "SECRET=1\n");
                }
            }
            if !d.path().join("Procfile").exists() {
                d.write("Procfile", "web: touch started; exec sleep 30\n");
            }
            let mut c = procrun(d.path(), &args);
            match *case {
                ".env is unreadable" => c = unreadable(c, &d.path().join(".env"), &bin),
                "Procfile is unreadable" => {
                    d.write("Procfile", "web: touch started; exec sleep 30\n");
                    c = unreadable(c, &d.path().join("Procfile"), &bin)
                }
                _ => {}
            }
            let (code, out, err) = c.spawn().finish(T);
            assert_eq!(code, 1, "{case} {command}: {err}");
            assert_eq!(out, "", "{case} {command}");
            assert_eq!(err, format!("procrun: error: {want}\n"), "{case} {command}");
            assert!(!d.path().join("started").exists(), "{case}: started");
        }
    }
    // Missing: skipped, and `check` says so; only then.
    let d = dir("web: true\n");
    let (code, _, err) = run(&d, &["-e", "gone,.env", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("env file: gone (not found, skipped)\nenv file: .env (not found, skipped)\n"),
        "{err}"
    );
    d.write(".env", "A=1\n");
    let (_, _, err) = run(&d, &["check"]);
    assert!(err.ends_with("env file: .env\n"), "{err}");
    let (code, _, err) = run(&d, &["-f", "nope", "check"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "procrun: error: Procfile does not exist: nope\n")
    );
}

#[test]
fn everything_is_validated_before_anything_starts_and_check_agrees() {
    let first = "a: touch started; exec sleep 30\n";
    let big = "v".repeat(200 * 1024);
    // (Procfile after `first`, .env, extra arguments, exit code, message)
    let cases: Vec<(String, String, Vec<&str>, i32, String)> = vec![
        (
            "b: echo \0x\n".into(),
            String::new(),
            vec![],
            1,
            "Procfile:2: NUL byte in the command of `b`".into(),
        ),
        (
            "b: true\n".into(),
            "A=1\nNUL=x\0y\n".into(),
            vec![],
            1,
            ".env:2:6: NUL byte in the value of `NUL`".into(),
        ),
        (
            "b: true\n".into(),
            format!("BIG={big}\n"),
            vec![],
            1,
            format!(
                ".env:1: `BIG=...` is {} bytes, over the kernel's limit of 131072",
                big.len() + 5
            ),
        ),
        (
            format!("b: {big}\n"),
            String::new(),
            vec![],
            1,
            format!("the command of `b` (Procfile:2) is {} bytes", big.len() + 1),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["-p", "65500"],
            1,
            "port 65600 of b.1 is above 65535 (base port 65500 from --port".into(),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["-c", "b=99999"],
            1,
            "invalid value for concurrency: 'b=99999' (at most 10000 instances per process type)"
                .into(),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["--ready", "c=tcp"],
            1,
            "the Procfile has no process type `c`".into(),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["--status-addr", "nonsense"],
            1,
            "invalid address: 'nonsense'".into(),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["--can-die", "c"],
            2,
            "--can-die: no process type `c` in the Procfile".into(),
        ),
        (
            "b: true\n".into(),
            String::new(),
            vec!["nope"],
            1,
            "Process type 'nope' does not exist in Procfile".into(),
        ),
    ];
    for (rest, env, extra, want_code, want) in &cases {
        for command in ["check", "start"] {
            let d = dir(&format!("{first}{rest}"));
            d.write(".env", env);
            let mut args = vec![command];
            args.extend(extra.iter().copied());
            let (code, out, err) = run(&d, &args);
            assert_eq!(code, *want_code, "{command} {want}: {err:.300}");
            assert_eq!(out, "", "{command} {want}");
            assert!(
                err.contains(want.as_str()),
                "{command}: want {want}, got {err:.300}"
            );
            assert_eq!(err.lines().count(), 1, "{err:.300}");
            assert!(!err.contains("vvvv"), "a value in the message: {err:.300}");
            assert!(
                !d.path().join("started").exists(),
                "{command} {want}: a process started"
            );
        }
    }
}

#[test]
fn env_file_values_never_appear_in_messages() {
    // One line per error path, each carrying the marker.
    let m = "tok_SECRET_123";
    let pem_body = format!("MIIEvQIBADANBgkqhkiG9w0BAQEFAAS{m}+abc/def");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("1API_TOKEN={m}\n"),
            ".env:1:1: a key cannot start with a digit",
        ),
        (format!("={m}\n"), ".env:1:1: expected a key before `=`"),
        (
            format!("KEY=-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----\n"),
            ".env:2:46: `+` is not allowed in a key",
        ),
        (
            format!("MY-VAR={m}\n"),
            ".env:1:3: `-` is not allowed in a key",
        ),
        (
            format!("API_TOKEN {m}\n"),
            ".env:1:11: expected `=` after the key",
        ),
        (
            format!("CERT=\"{m}\n"),
            ".env:1:6: unterminated double-quoted value of `CERT`",
        ),
        (
            format!("TOKEN={m}\0\n"),
            ".env:1:21: NUL byte in the value of `TOKEN`",
        ),
        (
            format!("A=1\n{m}\u{e9}=x\n"),
            ".env:2:15: invalid character in a key",
        ),
        (
            format!("PORT={m}\n"),
            "invalid value for port: PORT in the env file is not 1-65535",
        ),
        (
            format!("TOKEN={m}{}\n", "x".repeat(140_000)),
            ".env:1: `TOKEN=...` is 140021 bytes",
        ),
    ];
    for (env, want) in &cases {
        let d = dir("web: touch started\n");
        d.write(".env", env);
        for args in [
            &["check"][..],
            &["start"],
            &["run", "true"],
            &["export", "runit", "out"],
        ] {
            if want.contains("PORT") && args[0] == "run" {
                continue; // `run` has no port
            }
            if want.contains("bytes") && args[0] == "export" {
                continue; // export writes files, it does not exec
            }
            let (code, out, err) = run(&d, args);
            assert_eq!(code, 1, "{args:?} {want}: {err}");
            assert!(
                !out.contains("SECRET") && !err.contains("SECRET"),
                "{args:?}: {out}{err}"
            );
            assert!(err.contains(want), "{args:?}: want {want}, got {err}");
        }
    }
}

#[test]
fn env_file_parsing_is_linear() {
    // 100,000 distinct keys: the old parser took tens of seconds; a debug build now needs well
    // under one. The bound is generous for a loaded 2-core machine. The stack limit is set so
    // that 100,000 variables fit in a child's environment (execve's limit is a quarter of it).
    let d = dir("web: true\n");
    let mut text = String::with_capacity(2_000_000);
    for i in 0..100_000 {
        text.push_str(&format!("K{i}=1\n"));
    }
    d.write(".env", &text);
    let c = Launch::shell(d.path(), &format!("ulimit -s 8192; exec {BIN} check"));
    let start = Instant::now();
    let (code, _, err) = c.spawn().finish(Duration::from_secs(60));
    let took = start.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(took < Duration::from_secs(10), "check took {took:?}");
}

/// The pid's threads' names.
fn threads(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|t| {
                std::fs::read_to_string(t.ok()?.path().join("comm"))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Waits until procrun is blocked reading a FIFO: its reading thread exists.
fn wait_for_reader(r: &Running) {
    assert!(
        wait_until(T, || threads(r.pid).iter().any(|t| t == "read-input")),
        "no reading thread: {:?}",
        threads(r.pid)
    );
}

#[test]
fn a_blocked_read_of_the_inputs_stays_interruptible() {
    for (file, args, signal, want) in [
        ("f", &["-e", "f", "check"][..], Signal::SIGTERM, 143),
        ("f", &["-e", "f", "start"], Signal::SIGINT, 130),
        ("P", &["-f", "P", "start"], Signal::SIGHUP, 129),
        ("f", &["-e", "f", "run", "true"], Signal::SIGQUIT, 131),
    ] {
        let d = dir("web: touch started\n");
        nix::unistd::mkfifo(
            &d.path().join(file),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let r = procrun(d.path(), args).spawn();
        wait_for_reader(&r);
        // Other signals wait for later; they do not end the read.
        r.signal(Signal::SIGUSR1);
        r.signal(signal);
        let start = Instant::now();
        let (code, out, err) = r.finish(T);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(out, "");
        assert!(
            err.contains(&format!(
                "{} received while reading {file}",
                signal.as_str()
            )),
            "{err}"
        );
        assert!(!d.path().join("started").exists());
    }
    // A writer that comes: the FIFO is read as any file.
    let d = dir("web: echo \"A=$A\"\n");
    let fifo = d.path().join("f");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let r = procrun(d.path(), &["-e", "f", "start", "--no-prefix"]).spawn();
    wait_for_reader(&r);
    // Opened without blocking (ENXIO until procrun's reader has it open), so that a procrun
    // that never reads cannot hang the test.
    let end = Instant::now() + T;
    let writer = loop {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    };
    use std::io::Write;
    (&writer).write_all(b"A=from-the-fifo\n").unwrap();
    drop(writer);
    let (code, out, err) = r.finish(T);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("A=from-the-fifo"), "{out}");
}

#[test]
fn run_without_a_command_is_a_usage_error() {
    let d = dir("");
    for args in [&["run"][..], &["run", "--"]] {
        let (code, out, err) = run(&d, args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(err.contains("<COMMAND>"), "{err}");
    }
}

#[test]
fn procrun_variables_as_a_dockerfile_sets_them() {
    let d = dir("web: echo \"PORT=$PORT\"\n");
    // ENV PROCRUN_NO_COLOUR=1 and friends: the image starts.
    let env = [
        ("PROCRUN_NO_COLOUR", "1"),
        ("PROCRUN_NO_TIMESTAMP", "yes"),
        ("PROCRUN_COLOUR", "always"),
        ("PROCRUN_PORT", "7000"),
        ("PROCRUN_TIMEOUT", "20"),
        ("PROCRUN_BEFORE", ""),
    ];
    let (code, out, err) = run_env(&d, &["start"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web.1  | PORT=7000\n"), "{out:?}");
    assert!(
        !out.contains('\x1b'),
        "--no-colour wins over --colour: {out:?}"
    );
    let (code, out, _) = run_env(&d, &["start"], &[("PROCRUN_NO_PREFIX", "TRUE")]);
    assert_eq!(code, 0);
    assert!(out.contains("\nPORT=5000\n"), "{out}");
    let (code, _, err) = run_env(&d, &["start"], &[("PROCRUN_NO_PREFIX", "2")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value '2' in PROCRUN_NO_PREFIX"),
        "{err}"
    );
    let (code, _, err) = run_env(&d, &["start"], &[("PROCRUN_PORT", "x")]);
    assert_eq!(code, 1);
    assert!(err.contains("'x' (from PROCRUN_PORT (--port);"), "{err}");
}

#[test]
fn honcho_habits() {
    let d = dir("web: echo \"web $PORT\"; exec sleep 30\nworker: echo done\n");
    // --c and --co are honcho's --concurrency, not --colour.
    for c in ["--c", "--co"] {
        let r = procrun(d.path(), &["start", c, "web=2,worker=0", "--no-prefix"]).spawn();
        r.wait_for("web 5000", T);
        r.wait_for("web 5001", T);
        r.signal(Signal::SIGTERM);
        let (code, out, err) = r.finish(T);
        assert_eq!(code, 143, "{c}: {out}{err}");
        assert!(!out.contains("worker"), "{c}: {out}");
    }
    let (code, _, err) = run(&d, &["start", "--no"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'--no' is ambiguous: --no-colour, --no-prefix, --no-timestamp"),
        "{err}"
    );
    // -v and --version after the command.
    for v in ["-v", "--version"] {
        let (code, out, _) = run(&d, &["start", v]);
        assert_eq!(
            (code, out),
            (0, format!("procrun start {}\n", env!("CARGO_PKG_VERSION")))
        );
    }
    let (code, _, err) = run(&d, &["start", "-p", "-5"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid value for port: '-5' (from --port; a port is 1-65535)"),
        "{err}"
    );
    assert!(!err.contains("tip"), "{err}");
    // ENV_NAME chose a Procfile that is not there.
    let (code, _, err) = run_env(&d, &["check"], &[("ENV_NAME", "prod")]);
    assert_eq!(code, 1);
    assert!(err.contains("Procfile does not exist: environments/prod/Procfile (chosen by ENV_NAME=prod; there is no directory environments/prod)"), "{err}");
    // `-` in a key.
    d.write(".env", "MY-VAR=1\n");
    let (_, _, err) = run(&d, &["check"]);
    assert!(
        err.contains(".env:1:3: `-` is not allowed in a key"),
        "{err}"
    );
}

#[test]
fn a_bare_key_takes_its_value_from_procruns_environment() {
    let d = dir("web: echo \"A=$A B=${B-unset} C=${C-unset}\"\n");
    d.write("e1", "A=file\nB=file\n")
        .write("e2", "A\nB\n# C is not set anywhere\nC\n");
    let (code, out, err) = run_env(&d, &["-e", "e1,e2", "start", "--no-prefix"], &[("A", "os")]);
    assert_eq!(code, 0, "{err}");
    // A: the bare line brings the OS value back over e1's; B: not in the environment, so e1's
    // stays; C: nothing.
    assert!(out.contains("A=os B=file C=unset"), "{out}");
}

#[test]
fn process_role_options_are_checked_against_the_procfile() {
    let d = dir("release: touch started\nweb: touch started; exec sleep 30\nnginx: sleep 30\n");
    // (arguments, environment, message): exit 2, one line naming the option or variable.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--can-die", "wrker"],
            &[],
            "--can-die: no process type `wrker` in the Procfile",
        ),
        (
            &[],
            &[("PROCRUN_CAN_DIE", "wrker")],
            "PROCRUN_CAN_DIE (--can-die): no process type `wrker` in the Procfile",
        ),
        (
            &["--auto-restart", "release"],
            &[],
            "--auto-restart: `release` is a --before type (a type named `release` is one by default; --before '' turns that off): it runs once, to completion, before the others start",
        ),
        (
            &["--after", "nginx=web,web=nginx"],
            &[],
            "--after: cycle: nginx -> web -> nginx",
        ),
        (
            &["--after", "web=release"],
            &[],
            "--after: `release` is a --before type",
        ),
        (
            &["--stop-signal", "nginx=QUITE"],
            &[],
            "--stop-signal: `nginx=QUITE` does not name a signal",
        ),
        (
            &["--before", "web", "--can-die", "web"],
            &[],
            "--can-die: `web` is a --before type",
        ),
    ];
    for (extra, env, want) in cases {
        for command in ["check", "start"] {
            let mut args = vec![command];
            args.extend_from_slice(extra);
            let (code, out, err) = run_env(&d, &args, env);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert_eq!(out, "");
            assert!(
                err.starts_with(&format!("procrun: error: {want}")),
                "{args:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(!d.path().join("started").exists());
        }
    }
    // Valid roles pass `check`.
    let (code, _, err) = run(
        &d,
        &[
            "check",
            "--before",
            "release",
            "--can-die",
            "all",
            "--after",
            "nginx=web",
            "--stop-signal",
            "nginx=QUIT",
            "--drain",
            "2",
            "--restart-limit",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&d, &["check", "--auto-restart", "release", "--before", ""]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_env(
        &d,
        &["check"],
        &[("PROCRUN_AUTO_RESTART", "release"), ("PROCRUN_BEFORE", ",")],
    );
    assert_eq!(code, 0, "{err}");
    // `procrun start release` runs just it, as honcho would.
    let (code, out, _) = run(&d, &["start", "release"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("release.1 started") && !out.contains("web.1"),
        "{out}"
    );
}
