//! `procrun export FORMAT LOCATION`: writes the Procfile's processes as supervisord, systemd,
//! upstart or runit configuration, as honcho 2.0.0 does (`formats` renders, this module resolves
//! the configuration and writes the files). honcho's `-t/--template-dir` (custom Jinja templates)
//! is not supported: procrun has no template engine, and says so instead of silently using the
//! built-in templates.

mod formats;

pub(crate) use formats::Format;
use formats::{Context, File, Process, render};

use crate::config::{self, Expand, Inputs, OsEnv};
use crate::error::Error;
use std::path::{Component, Path, PathBuf};

/// What `procrun export` was asked to do (honcho's options, same defaults).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) inputs: Inputs,
    pub(crate) expand: Expand,
    /// Application name (default: the name of the current directory).
    pub(crate) app: Option<String>,
    /// Directory for the processes' logs (default: `/var/log/APP`).
    pub(crate) log: Option<String>,
    /// User the processes run as (default: APP).
    pub(crate) user: Option<String>,
    pub(crate) shell: String,
    /// honcho's custom template directory: refused.
    pub(crate) template_dir: Option<String>,
    pub(crate) format: Format,
    /// Where the files go (created if missing).
    pub(crate) location: String,
}

/// Python's `os.path.join(location, name)` for a relative `name`.
fn join(location: &str, name: &str) -> String {
    if location.is_empty() || location.ends_with('/') {
        format!("{location}{name}")
    } else {
        format!("{location}/{name}")
    }
}

/// Python's `os.path.abspath`: joined to `cwd` when relative, then normalised lexically
/// (`.` and empty components dropped, `..` removes the previous one; symlinks not resolved).
pub(crate) fn abspath(path: &Path, cwd: &Path) -> PathBuf {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in full.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn ensure_dir(dir: &str) -> Result<(), Error> {
    let fail = |source| Error::Io {
        context: format!("Could not create export directory '{dir}'"),
        source,
    };
    if dir.is_empty() {
        return Err(fail(std::io::Error::from_raw_os_error(libc::ENOENT)));
    }
    if Path::new(dir).exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(fail)
}

/// Creates `location` if missing and writes each file under it, logging `Writing 'PATH'` to
/// stderr first (as honcho); `run` files and the like get mode 0755.
pub(crate) fn write_files(location: &str, files: &[File]) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    ensure_dir(location)?;
    for f in files {
        let path = join(location, &f.name);
        say(&format!("Writing '{path}'\n"));
        if let Some(parent) = Path::new(&path).parent() {
            let parent = parent.to_string_lossy();
            if !parent.is_empty() {
                ensure_dir(&parent)?;
            }
        }
        let fail = |source| Error::Io {
            context: format!("Could not write to export file '{path}'"),
            source,
        };
        std::fs::write(&path, &f.content).map_err(fail)?;
        if f.executable {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(fail)?;
        }
    }
    Ok(())
}

/// Writes a message to stderr, ignoring errors (stderr may be closed).
fn say(message: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
}

/// `procrun export`: configuration as for `start`, then render and write.
pub(crate) fn run(args: &Options, os: &OsEnv) -> Result<i32, Error> {
    if let Some(dir) = &args.template_dir {
        return Err(Error::Io {
            context: format!("--template-dir '{dir}' is not supported"),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "procrun renders honcho's built-in templates only; export without -t and edit the files",
            ),
        });
    }
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        context: "cannot read the current directory".into(),
        source,
    })?;
    let (sources, pf) = config::load(&args.inputs, os)?;
    let processes: Vec<Process> = config::instances(&pf, &args.expand, &[], &sources.env, os)?
        .iter()
        .map(|i| Process {
            name: i.name.clone(),
            type_name: i.type_name.clone(),
            command: i.command.clone(),
            env: config::honcho_env(&sources.env, i),
        })
        .collect();
    let app = args.app.clone().unwrap_or_else(|| {
        cwd.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let log = match args.log.as_deref() {
        None | Some("/var/log/APP") => format!("/var/log/{app}"),
        Some(l) => l.to_string(),
    };
    let user = args
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| app.clone());
    let root = abspath(
        Path::new(args.inputs.app_root.as_deref().unwrap_or(".")),
        &cwd,
    );
    let ctx = Context {
        app,
        app_root: root.to_string_lossy().into_owned(),
        log,
        shell: args.shell.clone(),
        user,
    };
    write_files(&args.location, &render(args.format, &processes, &ctx))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_like_python() {
        let joins = [
            ("out", "a", "out/a"),
            ("out/", "a", "out/a"),
            ("/abs", "a/b", "/abs/a/b"),
            ("", "a", "a"),
        ];
        for (loc, name, want) in joins {
            assert_eq!(join(loc, name), want);
        }
    }

    #[test]
    fn abspath_like_python() {
        let cwd = Path::new("/home/u/app");
        let cases = [
            (".", "/home/u/app"),
            ("sub/", "/home/u/app/sub"),
            ("../x/./y", "/home/u/x/y"),
            ("/a//b/../c", "/a/c"),
            ("/..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(abspath(Path::new(input), cwd), Path::new(want), "{input}");
        }
    }

    #[test]
    fn env_order_as_honcho() {
        let inst = config::Instance {
            name: "web.2".into(),
            type_name: "web".into(),
            command: "c".into(),
            port: 5001,
        };
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let table: [(Pairs, Pairs); 3] = [
            (
                &[("A", "1")],
                &[
                    ("HONCHO_PROCESS_NAME", "web.2"),
                    ("A", "1"),
                    ("PORT", "5001"),
                ],
            ),
            // An env-file PORT keeps its place; its value is replaced by the instance's port.
            (
                &[("PORT", "8000"), ("B", "2")],
                &[
                    ("HONCHO_PROCESS_NAME", "web.2"),
                    ("PORT", "5001"),
                    ("B", "2"),
                ],
            ),
            // The env file overrides HONCHO_PROCESS_NAME, in place.
            (
                &[("B", "2"), ("HONCHO_PROCESS_NAME", "x")],
                &[("HONCHO_PROCESS_NAME", "x"), ("B", "2"), ("PORT", "5001")],
            ),
        ];
        for (env, want) in table {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(config::honcho_env(&env, &inst), want);
        }
    }

    #[test]
    fn write_errors() {
        let base = std::env::temp_dir().join(format!("procrun-export-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        // LOCATION is a file: writing under it fails.
        let file = base.join("plain");
        std::fs::write(&file, "x").unwrap();
        let loc = file.to_string_lossy().into_owned();
        let f = [File {
            name: "a.conf".into(),
            content: "c".into(),
            executable: false,
        }];
        let e = write_files(&loc, &f).unwrap_err().to_string();
        assert!(e.starts_with("Could not write to export file"), "{e}");
        // A directory that cannot be created.
        let loc = format!("{loc}/sub");
        let e = write_files(&loc, &f).unwrap_err().to_string();
        assert!(e.starts_with("Could not create export directory"), "{e}");
        let e = write_files("", &f).unwrap_err().to_string();
        assert!(e.starts_with("Could not create export directory"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
