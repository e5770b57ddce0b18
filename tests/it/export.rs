//! `procrun export` against the real binary: the observed honcho case 40 byte for byte, and the
//! file sets, contents and modes of the other formats.

use crate::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases/honcho")
        .join(name)
}

/// Every file under `root`, as paths relative to it, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Runs `procrun ARGS` in `dir`; returns (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    procrun(dir, args).spawn().finish(T)
}

/// A temp dir with a Procfile and .env; its canonical path (what getcwd reports).
fn project(procfile: &str, env: &str) -> (Dir, PathBuf) {
    let d = Dir::new("export");
    d.write("Procfile", procfile).write(".env", env);
    let real = d.path().canonicalize().unwrap();
    (d, real)
}

#[test]
fn case_40_supervisord_byte_for_byte() {
    let case = case_dir("40-export-supervisord");
    let d = Dir::new("case40");
    for name in ["Procfile", ".env"] {
        std::fs::copy(case.join(name), d.path().join(name)).unwrap();
    }
    let cmd = std::fs::read_to_string(case.join("cmd")).unwrap();
    let args: Vec<&str> = cmd
        .trim_end()
        .strip_prefix("honcho ")
        .unwrap()
        .split(' ')
        .collect();
    let (code, out, err) = run(d.path(), &args);
    let want_code: i32 = std::fs::read_to_string(case.join("exit_code"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(code, want_code, "stderr:\n{err}");
    assert_eq!(out, std::fs::read_to_string(case.join("stdout")).unwrap());
    // honcho's stderr lines carry a logging prefix (`DATE TIME [PID] [INFO] `); procrun prints
    // the message alone, as for `check`.
    let want_err: Vec<String> = std::fs::read_to_string(case.join("stderr"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("[INFO] ").unwrap().1.to_string())
        .collect();
    assert_eq!(err.lines().collect::<Vec<_>>(), want_err);

    let expected = case.join("expected-files");
    let casedir = d.path().canonicalize().unwrap();
    let want_files = files(&expected);
    assert!(!want_files.is_empty());
    assert_eq!(files(d.path()).len(), want_files.len() + 2, "extra files");
    for rel in want_files {
        let want = std::fs::read_to_string(expected.join(&rel)).unwrap();
        let got = std::fs::read_to_string(d.path().join(&rel))
            .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        let got = got.replace(&casedir.display().to_string(), "<casedir>");
        assert_eq!(got, want, "{}", rel.display());
    }
}

#[test]
fn systemd_file_set() {
    let (d, root) = project("web: serve $PORT\nworker: work\n", "A='x y'\n");
    let (code, out, err) = run(
        d.path(),
        &["export", "-a", "app", "-c", "worker=2", "systemd", "out"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    let want = [
        "app-web-1.service",
        "app-web.target",
        "app-worker-1.service",
        "app-worker-2.service",
        "app-worker.target",
        "app.target",
    ];
    let out_dir = d.path().join("out");
    assert_eq!(files(&out_dir), want.map(PathBuf::from));
    // Logged in honcho's order.
    let logged: Vec<&str> = err.lines().collect();
    assert_eq!(
        logged,
        [
            "Writing 'out/app.target'",
            "Writing 'out/app-web.target'",
            "Writing 'out/app-web-1.service'",
            "Writing 'out/app-worker.target'",
            "Writing 'out/app-worker-1.service'",
            "Writing 'out/app-worker-2.service'",
        ]
    );
    let svc = std::fs::read_to_string(out_dir.join("app-worker-2.service")).unwrap();
    assert!(svc.contains(&format!(
        "User=app\nWorkingDirectory={}\nEnvironment=HONCHO_PROCESS_NAME=worker.2\n\
         Environment=A='x y'\nEnvironment=PORT=5101\nExecStart=/bin/sh -lc 'work'\n",
        root.display()
    )));
    assert!(svc.ends_with("WantedBy=multi-user.target"));
}

#[test]
fn upstart_file_set_and_defaults() {
    let (d, root) = project("web: serve\n", "");
    // Default app name = the directory's name; user = app; absolute LOCATION.
    let app = root.file_name().unwrap().to_string_lossy().into_owned();
    let out_dir = d.path().join("deep/er");
    let loc = out_dir.display().to_string();
    let (code, _, err) = run(d.path(), &["export", "upstart", &loc]);
    assert_eq!(code, 0, "{err}");
    let want = [
        format!("{app}-web-1.conf"),
        format!("{app}-web.conf"),
        format!("{app}.conf"),
    ];
    assert_eq!(files(&out_dir), want.map(PathBuf::from));
    let job = std::fs::read_to_string(out_dir.join(format!("{app}-web-1.conf"))).unwrap();
    assert!(job.ends_with(&format!(
        "exec su - {app} -m -s /bin/sh -c 'cd {}; exec serve'",
        root.display()
    )));
    assert!(err.contains(&format!("Writing '{loc}/{app}.conf'")));
}

#[test]
fn runit_file_set_and_modes() {
    let (d, root) = project("web: serve\n", "SECRET=\"a b\"\n");
    let (code, _, err) = run(
        d.path(),
        &[
            "export", "-a", "app", "-l", "/logs", "-u", "bob", "runit", "out/",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let out_dir = d.path().join("out");
    let want = [
        "app-web-1/env/HONCHO_PROCESS_NAME",
        "app-web-1/env/PORT",
        "app-web-1/env/SECRET",
        "app-web-1/log/run",
        "app-web-1/run",
    ];
    assert_eq!(files(&out_dir), want.map(PathBuf::from));
    let mode = |p: &str| {
        std::fs::metadata(out_dir.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("app-web-1/run"), 0o755);
    assert_eq!(mode("app-web-1/log/run"), 0o755);
    assert_eq!(mode("app-web-1/env/PORT") & 0o111, 0);
    let read = |p: &str| std::fs::read_to_string(out_dir.join(p)).unwrap();
    assert_eq!(read("app-web-1/env/SECRET"), "a b");
    assert_eq!(read("app-web-1/env/PORT"), "5000");
    assert_eq!(
        read("app-web-1/run"),
        format!(
            "#!/bin/sh\nexec 2>&1\nENVDIR=$PWD/env\ncd {}\nexec chpst -u bob -e \"$ENVDIR\" \\\n  serve",
            root.display()
        )
    );
    assert!(read("app-web-1/log/run").contains("LOG=/logs/web-1\n"));
    assert!(err.contains("Writing 'out/app-web-1/run'"));
}

#[test]
fn errors_exit_1() {
    let (d, _) = project("web: serve\n", "");
    d.write("blocker", "not a directory");
    // LOCATION exists as a file: the write fails.
    let (code, _, err) = run(d.path(), &["export", "supervisord", "blocker"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Could not write to export file 'blocker/"),
        "{err}"
    );
    // LOCATION cannot be created.
    let (code, _, err) = run(d.path(), &["export", "supervisord", "blocker/sub"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Could not create export directory 'blocker/sub'"),
        "{err}"
    );
    // Missing Procfile, unknown format, custom templates.
    let (code, _, err) = run(d.path(), &["export", "-f", "nope", "runit", "x"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, _) = run(d.path(), &["export", "launchd", "x"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(d.path(), &["export", "-t", "tpl", "runit", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("--template-dir"), "{err}");
    assert!(!d.path().join("x").exists());
}
