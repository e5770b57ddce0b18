//! `procrun export FORMAT LOCATION`: writes the Procfile's processes as supervisord, systemd,
//! upstart or runit configuration, byte for byte as honcho 2.0.0's built-in templates render
//! them (Jinja drops each file's final newline, so no file ends with one).
//!
//! The renderers are pure (`render` and the per-format functions take the expanded processes
//! and a [`Context`]); [`write_files`] is the only I/O, and [`run`] glues configuration, rendering
//! and writing together. honcho's `-t/--template-dir` (custom Jinja templates) is not supported:
//! procrun has no template engine, and says so instead of silently using the built-in templates.

use crate::cli::Common;
use crate::config::{self, OsEnv};
use crate::error::Error;
use clap::{Args, ValueEnum};
use std::path::{Component, Path, PathBuf};

/// Options of `procrun export` (honcho's, same names and defaults).
#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Application name [default: the name of the current directory]
    #[arg(short = 'a', long = "app", env = "PROCRUN_APP", value_name = "APP")]
    pub app: Option<String>,
    /// Directory for the processes' logs [default: /var/log/APP]
    #[arg(short = 'l', long = "log", env = "PROCRUN_LOG", value_name = "DIR")]
    pub log: Option<String>,
    #[command(flatten)]
    pub expand: crate::cli::Expand,
    /// User the processes run as [default: APP]
    #[arg(short = 'u', long = "user", env = "PROCRUN_USER", value_name = "USER")]
    pub user: Option<String>,
    /// Shell that runs the commands
    #[arg(
        short = 's',
        long = "shell",
        env = "PROCRUN_SHELL",
        value_name = "SHELL",
        default_value = "/bin/sh"
    )]
    pub shell: String,
    /// Custom template directory (honcho's; not supported by procrun: an error)
    #[arg(short = 't', long = "template-dir", value_name = "DIR")]
    pub template_dir: Option<String>,
    /// Format to export to
    #[arg(value_enum, value_name = "FORMAT")]
    pub format: Format,
    /// Directory to write the files to (created if missing)
    #[arg(value_name = "LOCATION")]
    pub location: String,
}

/// The export formats, as honcho names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Runit,
    Supervisord,
    Systemd,
    Upstart,
}

/// Values every template sees (honcho's context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub app: String,
    /// Absolute app root (`os.path.abspath(-d)`), the processes' working directory.
    pub app_root: String,
    pub log: String,
    pub shell: String,
    pub user: String,
}

/// One instance to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// `type.N`
    pub name: String,
    /// The Procfile type name.
    pub type_name: String,
    pub command: String,
    /// `HONCHO_PROCESS_NAME`, the env-file variables, `PORT` (honcho's order: a later key
    /// that is already present keeps its place and takes the new value).
    pub env: Vec<(String, String)>,
}

/// A rendered file, its name relative to LOCATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub content: String,
    /// Made mode 0755 after writing.
    pub executable: bool,
}

/// Python's `shlex.quote`: unchanged if every character is in `[A-Za-z0-9_@%+=:,./-]` (and
/// not empty), otherwise single-quoted with each `'` written as `'"'"'`.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// honcho's `dashrepl`: every non-word character (Python's Unicode `\W`) becomes `-`.
pub fn dashrepl(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// honcho's `percentescape` (supervisord expands `%(name)s`): `%` becomes `%%`.
fn percent_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// Renders every file of `format`, in the order honcho writes them.
pub fn render(format: Format, processes: &[Process], ctx: &Context) -> Vec<File> {
    match format {
        Format::Supervisord => vec![supervisord(processes, ctx)],
        Format::Systemd => systemd(processes, ctx),
        Format::Upstart => upstart(processes, ctx),
        Format::Runit => runit(processes, ctx),
    }
}

/// One `APP.conf`: a `[program:type-N]` per instance and a `[group:APP]`.
pub fn supervisord(processes: &[Process], ctx: &Context) -> File {
    let mut s = String::new();
    for p in processes {
        let name = dashrepl(&p.name);
        let env: Vec<String> = p
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_escape(&shell_quote(v))))
            .collect();
        s += &format!(
            "[program:{name}]\n\
             command={shell} -c '{cmd}'\n\
             autostart=true\n\
             autorestart=true\n\
             stopsignal=QUIT\n\
             stdout_logfile={log}/{name}.log\n\
             stderr_logfile={log}/{name}.error.log\n\
             user={user}\n\
             directory={root}\n\
             environment={env}\n\n",
            shell = ctx.shell,
            cmd = percent_escape(&p.command),
            log = ctx.log,
            user = ctx.user,
            root = ctx.app_root,
            env = env.join(","),
        );
    }
    let names: Vec<String> = processes.iter().map(|p| dashrepl(&p.name)).collect();
    s += &format!("[group:{}]\nprograms={}", ctx.app, names.join(","));
    File {
        name: format!("{}.conf", ctx.app),
        content: s,
        executable: false,
    }
}

/// Consecutive instances of the same type (honcho's `itertools.groupby`).
fn groups(processes: &[Process]) -> Vec<(&str, &[Process])> {
    let mut out: Vec<(&str, &[Process])> = Vec::new();
    let mut start = 0;
    for i in 1..=processes.len() {
        if i == processes.len() || processes[i].type_name != processes[start].type_name {
            out.push((processes[start].type_name.as_str(), &processes[start..i]));
            start = i;
        }
    }
    out
}

/// `APP.target`, then per type `APP-TYPE.target` followed by its `APP-TYPE-N.service` units.
pub fn systemd(processes: &[Process], ctx: &Context) -> Vec<File> {
    let app = &ctx.app;
    let groups = groups(processes);
    let master_wants: Vec<String> = groups
        .iter()
        .map(|(t, _)| format!("{app}-{t}.target"))
        .collect();
    let mut files = vec![File {
        name: format!("{app}.target"),
        content: format!(
            "[Unit]\nWants={}\n\n[Install]\nWantedBy=multi-user.target",
            master_wants.join(" ")
        ),
        executable: false,
    }];
    for (t, procs) in groups {
        let group = format!("{app}-{t}");
        let unit = |p: &Process| format!("{app}-{}", dashrepl(&p.name));
        let wants: Vec<String> = procs.iter().map(|p| unit(p) + ".service").collect();
        files.push(File {
            name: format!("{group}.target"),
            content: format!("[Unit]\nPartOf={app}.target\nWants={}", wants.join(" ")),
            executable: false,
        });
        for p in procs {
            let env: String = p
                .env
                .iter()
                .map(|(k, v)| format!("Environment={k}={}\n", shell_quote(v)))
                .collect();
            files.push(File {
                name: format!("{}.service", unit(p)),
                content: format!(
                    "[Unit]\n\
                     PartOf={group}.target\n\
                     \n\
                     [Service]\n\
                     User={user}\n\
                     WorkingDirectory={root}\n\
                     {env}\
                     ExecStart={shell} -lc '{cmd}'\n\
                     Restart=always\n\
                     StandardInput=null\n\
                     StandardOutput=journal\n\
                     StandardError=journal\n\
                     SyslogIdentifier=%n\n\
                     KillMode=process\n\
                     \n\
                     [Install]\n\
                     WantedBy=multi-user.target",
                    user = ctx.user,
                    root = ctx.app_root,
                    shell = ctx.shell,
                    cmd = p.command,
                ),
                executable: false,
            });
        }
    }
    files
}

/// `APP.conf`, then per type `APP-TYPE.conf` followed by its `APP-TYPE-N.conf` jobs.
pub fn upstart(processes: &[Process], ctx: &Context) -> Vec<File> {
    let app = &ctx.app;
    let mut files = vec![File {
        name: format!("{app}.conf"),
        content: "start on (started network-interface\n          \
                  or started network-manager\n          \
                  or started networking)\n\
                  \n\
                  stop on (stopping network-interface\n         \
                  or stopping network-manager\n         \
                  or stopping networking)"
            .to_string(),
        executable: false,
    }];
    for (t, procs) in groups(processes) {
        let group = format!("{app}-{t}");
        files.push(File {
            name: format!("{group}.conf"),
            content: format!("start on starting {app}\nstop on stopping {app}"),
            executable: false,
        });
        for p in procs {
            let env: String = p
                .env
                .iter()
                .map(|(k, v)| format!("env {k}={}\n", shell_quote(v)))
                .collect();
            files.push(File {
                name: format!("{app}-{}.conf", dashrepl(&p.name)),
                content: format!(
                    "start on starting {group}\n\
                     stop on stopping {group}\n\
                     respawn\n\
                     \n\
                     {env}\n\
                     exec su - {user} -m -s {shell} -c 'cd {root}; exec {cmd}'",
                    user = ctx.user,
                    shell = ctx.shell,
                    root = ctx.app_root,
                    cmd = p.command,
                ),
                executable: false,
            });
        }
    }
    files
}

/// Per instance a service directory `APP-TYPE-N/` with an envdir `env/KEY`, `run` and
/// `log/run` (both executable).
pub fn runit(processes: &[Process], ctx: &Context) -> Vec<File> {
    let mut files = Vec::new();
    for p in processes {
        let name = dashrepl(&p.name);
        let dir = format!("{}-{name}", ctx.app);
        for (k, v) in &p.env {
            files.push(File {
                name: format!("{dir}/env/{k}"),
                content: v.clone(),
                executable: false,
            });
        }
        files.push(File {
            name: format!("{dir}/run"),
            content: format!(
                "#!{shell}\n\
                 exec 2>&1\n\
                 ENVDIR=$PWD/env\n\
                 cd {root}\n\
                 exec chpst -u {user} -e \"$ENVDIR\" \\\n  \
                 {cmd}",
                shell = ctx.shell,
                root = ctx.app_root,
                user = ctx.user,
                cmd = p.command,
            ),
            executable: true,
        });
        files.push(File {
            name: format!("{dir}/log/run"),
            content: format!(
                "#!/bin/sh\n\
                 set -e\n\
                 \n\
                 LOG={log}/{name}\n\
                 \n\
                 if [ ! -d \"$LOG\" ]; then\n    \
                 mkdir -p -m 2750 \"$LOG\"\n    \
                 chown {user} \"$LOG\"\n\
                 fi\n\
                 \n\
                 exec chpst -u {user} svlogd \"$LOG\"",
                log = ctx.log,
                user = ctx.user,
            ),
            executable: true,
        });
    }
    files
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
pub fn abspath(path: &Path, cwd: &Path) -> PathBuf {
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
pub fn write_files(location: &str, files: &[File]) -> Result<(), Error> {
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
pub fn run(common: &Common, args: &ExportArgs, os: &OsEnv) -> Result<i32, Error> {
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
    let (sources, pf) = config::load(common, os)?;
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
    let root = abspath(Path::new(common.app_root.as_deref().unwrap_or(".")), &cwd);
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

    fn ctx() -> Context {
        Context {
            app: "myapp".into(),
            app_root: "/srv/app".into(),
            log: "/var/log/myapp".into(),
            shell: "/bin/sh".into(),
            user: "me".into(),
        }
    }

    fn proc(name: &str, cmd: &str, env: &[(&str, &str)]) -> Process {
        Process {
            name: name.into(),
            type_name: name.split('.').next().unwrap().into(),
            command: cmd.into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn names(files: &[File]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn quoting_as_python_shlex() {
        let cases = [
            ("", "''"),
            ("abc", "abc"),
            ("A-Z_0.9/x:y,z=1+2@3%4", "A-Z_0.9/x:y,z=1+2@3%4"),
            ("a b", "'a b'"),
            ("it's", "'it'\"'\"'s'"),
            ("'", "''\"'\"''"),
            ("$HOME", "'$HOME'"),
            ("a\nb", "'a\nb'"),
            ("tab\there", "'tab\there'"),
            ("é", "'é'"),
            ("~", "'~'"),
            ("*", "'*'"),
            ("\"q\"", "'\"q\"'"),
        ];
        for (input, want) in cases {
            assert_eq!(shell_quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn dashrepl_and_join() {
        let cases = [
            ("web.1", "web-1"),
            ("a_b-c.10", "a_b-c-10"),
            ("x y", "x-y"),
            ("é.1", "é-1"),
        ];
        for (input, want) in cases {
            assert_eq!(dashrepl(input), want);
        }
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
    fn supervisord_rendering() {
        let ps = [
            proc(
                "web.1",
                "run 50% $PORT",
                &[
                    ("HONCHO_PROCESS_NAME", "web.1"),
                    ("S", "a%b c"),
                    ("PORT", "5000"),
                ],
            ),
            proc("clock.1", "tick", &[("PORT", "5100")]),
        ];
        let f = supervisord(&ps, &ctx());
        assert_eq!(f.name, "myapp.conf");
        assert!(!f.executable);
        let want = "[program:web-1]
command=/bin/sh -c 'run 50%% $PORT'
autostart=true
autorestart=true
stopsignal=QUIT
stdout_logfile=/var/log/myapp/web-1.log
stderr_logfile=/var/log/myapp/web-1.error.log
user=me
directory=/srv/app
environment=HONCHO_PROCESS_NAME=web.1,S='a%%b c',PORT=5000

[program:clock-1]
command=/bin/sh -c 'tick'
autostart=true
autorestart=true
stopsignal=QUIT
stdout_logfile=/var/log/myapp/clock-1.log
stderr_logfile=/var/log/myapp/clock-1.error.log
user=me
directory=/srv/app
environment=PORT=5100

[group:myapp]
programs=web-1,clock-1";
        assert_eq!(f.content, want);
        // No processes: only the group.
        assert_eq!(supervisord(&[], &ctx()).content, "[group:myapp]\nprograms=");
    }

    #[test]
    fn systemd_rendering() {
        let ps = [
            proc("web.1", "serve", &[("A", "x y"), ("PORT", "5000")]),
            proc("worker.1", "work", &[("PORT", "5100")]),
            proc("worker.2", "work", &[("PORT", "5101")]),
        ];
        let files = systemd(&ps, &ctx());
        assert_eq!(
            names(&files),
            [
                "myapp.target",
                "myapp-web.target",
                "myapp-web-1.service",
                "myapp-worker.target",
                "myapp-worker-1.service",
                "myapp-worker-2.service",
            ]
        );
        assert_eq!(
            files[0].content,
            "[Unit]\nWants=myapp-web.target myapp-worker.target\n\n[Install]\nWantedBy=multi-user.target"
        );
        assert_eq!(
            files[3].content,
            "[Unit]\nPartOf=myapp.target\nWants=myapp-worker-1.service myapp-worker-2.service"
        );
        let want = "[Unit]
PartOf=myapp-web.target

[Service]
User=me
WorkingDirectory=/srv/app
Environment=A='x y'
Environment=PORT=5000
ExecStart=/bin/sh -lc 'serve'
Restart=always
StandardInput=null
StandardOutput=journal
StandardError=journal
SyslogIdentifier=%n
KillMode=process

[Install]
WantedBy=multi-user.target";
        assert_eq!(files[2].content, want);
        assert!(files.iter().all(|f| !f.executable));
    }

    #[test]
    fn upstart_rendering() {
        let ps = [
            proc("web.1", "serve", &[("A", "it's"), ("PORT", "5000")]),
            proc("clock.1", "tick", &[]),
        ];
        let files = upstart(&ps, &ctx());
        assert_eq!(
            names(&files),
            [
                "myapp.conf",
                "myapp-web.conf",
                "myapp-web-1.conf",
                "myapp-clock.conf",
                "myapp-clock-1.conf"
            ]
        );
        assert_eq!(
            files[0].content,
            "start on (started network-interface
          or started network-manager
          or started networking)

stop on (stopping network-interface
         or stopping network-manager
         or stopping networking)"
        );
        assert_eq!(
            files[1].content,
            "start on starting myapp\nstop on stopping myapp"
        );
        let want = "start on starting myapp-web
stop on stopping myapp-web
respawn

env A='it'\"'\"'s'
env PORT=5000

exec su - me -m -s /bin/sh -c 'cd /srv/app; exec serve'";
        assert_eq!(files[2].content, want);
        assert_eq!(
            files[4].content,
            "start on starting myapp-clock\nstop on stopping myapp-clock\nrespawn\n\n\n\
             exec su - me -m -s /bin/sh -c 'cd /srv/app; exec tick'"
        );
    }

    #[test]
    fn runit_rendering() {
        let ps = [proc(
            "web.1",
            "serve --port $PORT",
            &[
                ("HONCHO_PROCESS_NAME", "web.1"),
                ("A", "x y"),
                ("PORT", "5000"),
            ],
        )];
        let files = runit(&ps, &ctx());
        assert_eq!(
            names(&files),
            [
                "myapp-web-1/env/HONCHO_PROCESS_NAME",
                "myapp-web-1/env/A",
                "myapp-web-1/env/PORT",
                "myapp-web-1/run",
                "myapp-web-1/log/run",
            ]
        );
        // Envdir values are raw (no quoting, no newline).
        assert_eq!(files[1].content, "x y");
        assert_eq!(files[2].content, "5000");
        assert_eq!(
            files[3].content,
            "#!/bin/sh\nexec 2>&1\nENVDIR=$PWD/env\ncd /srv/app\n\
             exec chpst -u me -e \"$ENVDIR\" \\\n  serve --port $PORT"
        );
        let want = "#!/bin/sh
set -e

LOG=/var/log/myapp/web-1

if [ ! -d \"$LOG\" ]; then
    mkdir -p -m 2750 \"$LOG\"
    chown me \"$LOG\"
fi

exec chpst -u me svlogd \"$LOG\"";
        assert_eq!(files[4].content, want);
        let exec: Vec<bool> = files.iter().map(|f| f.executable).collect();
        assert_eq!(exec, [false, false, false, true, true]);
    }

    #[test]
    fn render_dispatches_every_format() {
        let ps = [proc("web.1", "serve", &[("PORT", "5000")])];
        let counts = [
            (Format::Supervisord, 1),
            (Format::Systemd, 3),
            (Format::Upstart, 3),
            (Format::Runit, 3),
        ];
        for (format, n) in counts {
            let files = render(format, &ps, &ctx());
            assert_eq!(files.len(), n, "{format:?}");
            assert!(files.iter().all(|f| !f.content.ends_with('\n')));
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
