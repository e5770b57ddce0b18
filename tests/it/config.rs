use crate::harness::*;

fn dir(procfile: &str) -> Dir {
    Dir::with_procfile("config", procfile)
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
    let (code, out, _) = procrun(d.path(), &["start", "--no-prefix"]).run();
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
        let (code, out, err) = procrun(d.path(), args).run();
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
    let d = Dir::new("utf8");
    std::fs::write(d.path().join("Procfile"), b"web: echo \xff\n").unwrap();
    let (code, _, err) = procrun(d.path(), &["check"]).run();
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
        let (code, _, err) = procrun(d.path(), args).run();
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, out, _) = procrun(d.path(), &["--version"]).run();
    assert_eq!((code, out.starts_with("procrun ")), (0, true));
}

#[test]
fn check_reports_names_and_files_and_warnings() {
    let d = dir("\u{feff}web: a\n  indented: x\nworker: b\n");
    let (code, out, err) = procrun(d.path(), &["check"]).run();
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
    let d = Dir::new("envname");
    d.write(
        "environments/prod/Procfile",
        "web: echo \"APP=$APP PORT=$PORT\"\n",
    );
    d.write("environments/prod/.env", "APP=prod-app\n");
    let (code, out, err) = procrun(d.path(), &["start", "--no-prefix"])
        .env("ENV_NAME", "prod")
        .env("PROCRUN_PORT", "7000")
        .run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("APP=prod-app PORT=7000"), "{out}");
    let (code, _, err) = procrun(d.path(), &["check"])
        .env("ENV_NAME", "staging")
        .run();
    assert_eq!(code, 1);
    assert!(err.contains("environments/staging/Procfile"), "{err}");
}

#[test]
fn procfile_from_env_file_beats_os_environment() {
    let d = Dir::new("pfenv");
    d.write("A", "a: echo from-A\n")
        .write("B", "b: echo from-B\n")
        .write(".env", "PROCFILE=B\n");
    let (_, out, _) = procrun(d.path(), &["start", "--no-prefix"])
        .env("PROCFILE", "A")
        .run();
    assert!(out.contains("from-B"), "{out}");
}

/// `-d` resolves the Procfile and env files only: children keep procrun's cwd. The default
/// `.env` is the app root's, not the one beside a `-f` Procfile, as in honcho.
#[test]
fn app_root_and_env_file_lookup() {
    let d = Dir::new("approot");
    d.write("sub/Procfile", "web: pwd; echo \"X=$X\"\n")
        .write("sub/.env", "X=sub\n")
        .write(".env", "X=root\n");
    let cwd = d.path().canonicalize().unwrap().display().to_string();
    let (_, out, _) = procrun(d.path(), &["-d", "sub", "start", "--no-prefix"]).run();
    assert!(
        out.contains(&format!("\n{cwd}\n")) && out.contains("X=sub"),
        "{out}"
    );
    let (_, out, _) = procrun(d.path(), &["-f", "sub/Procfile", "start", "--no-prefix"]).run();
    assert!(out.contains("X=root"), "{out}");
}

/// `-e a,b`: later files win, missing ones are skipped, names are trimmed; `.env` is then not read.
#[test]
fn env_file_list_merges_left_to_right() {
    let d = dir("web: echo \"A=$A B=$B C=${C-unset}\"\n");
    d.write("e1", "A=first\nB=b\n")
        .write("e2", "A=second\n")
        .write(".env", "C=default\n");
    let (code, out, _) =
        procrun(d.path(), &["start", "--no-prefix", "-e", "e1, missing ,e2"]).run();
    assert_eq!(code, 0);
    assert!(out.contains("A=second B=b C=unset"), "{out}");
}

/// OS environment < env files, which also override HONCHO_PROCESS_NAME; PORT is always set.
#[test]
fn env_precedence_in_children() {
    let d = dir("web: echo \"FOO=$FOO NAME=$HONCHO_PROCESS_NAME PORT=$PORT\"\n");
    d.write(".env", "FOO=file\nHONCHO_PROCESS_NAME=custom\n");
    let (_, out, _) = procrun(d.path(), &["start", "--no-prefix"])
        .env("FOO", "os")
        .env("PORT", "6000")
        .run();
    assert!(out.contains("FOO=file NAME=custom PORT=6000"), "{out}");
}
