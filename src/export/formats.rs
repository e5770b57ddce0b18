//! The export formats, rendered byte for byte as honcho 2.0.0's built-in templates do (Jinja
//! drops each file's final newline, so no file ends with one). Pure: no I/O.

use crate::text::shell_quote;

/// The export formats, as honcho names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Runit,
    Supervisord,
    Systemd,
    Upstart,
}

/// Values every template sees (honcho's context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    pub(crate) app: String,
    /// Absolute app root (`os.path.abspath(-d)`), the processes' working directory.
    pub(crate) app_root: String,
    pub(crate) log: String,
    pub(crate) shell: String,
    pub(crate) user: String,
}

/// One instance to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    /// `type.N`
    pub(crate) name: String,
    /// The Procfile type name.
    pub(crate) type_name: String,
    pub(crate) command: String,
    /// `HONCHO_PROCESS_NAME`, the env-file variables, `PORT` (honcho's order: a later key
    /// that is already present keeps its place and takes the new value).
    pub(crate) env: Vec<(String, String)>,
}

/// A rendered file, its name relative to LOCATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) name: String,
    pub(crate) content: String,
    /// Made mode 0755 after writing.
    pub(crate) executable: bool,
}

/// honcho's `dashrepl`: every non-word character (Python's Unicode `\W`) becomes `-`.
pub(crate) fn dashrepl(s: &str) -> String {
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
pub(crate) fn render(format: Format, processes: &[Process], ctx: &Context) -> Vec<File> {
    match format {
        Format::Supervisord => vec![supervisord(processes, ctx)],
        Format::Systemd => systemd(processes, ctx),
        Format::Upstart => upstart(processes, ctx),
        Format::Runit => runit(processes, ctx),
    }
}

/// One `APP.conf`: a `[program:type-N]` per instance and a `[group:APP]`.
pub(crate) fn supervisord(processes: &[Process], ctx: &Context) -> File {
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

/// The layout systemd and upstart share: `first` (the app's file), then per type a group file
/// followed by one file per instance.
fn per_type(
    processes: &[Process],
    first: File,
    group: impl Fn(&str, &[Process]) -> File,
    instance: impl Fn(&str, &Process) -> File,
) -> Vec<File> {
    let mut files = vec![first];
    for (type_name, procs) in groups(processes) {
        files.push(group(type_name, procs));
        files.extend(procs.iter().map(|p| instance(type_name, p)));
    }
    files
}

/// One line per variable, `KEY=VALUE` with the value shell-quoted, in the given form.
fn env_lines(p: &Process, line: impl Fn(&str, &str) -> String) -> String {
    p.env
        .iter()
        .map(|(k, v)| line(k, &shell_quote(v)))
        .collect()
}

fn file(name: String, content: String) -> File {
    File {
        name,
        content,
        executable: false,
    }
}

/// `APP.target`, then per type `APP-TYPE.target` followed by its `APP-TYPE-N.service` units.
pub(crate) fn systemd(processes: &[Process], ctx: &Context) -> Vec<File> {
    let app = &ctx.app;
    let unit = |p: &Process| format!("{app}-{}", dashrepl(&p.name));
    let wants: Vec<String> = groups(processes)
        .iter()
        .map(|(t, _)| format!("{app}-{t}.target"))
        .collect();
    let master = file(
        format!("{app}.target"),
        format!(
            "[Unit]\nWants={}\n\n[Install]\nWantedBy=multi-user.target",
            wants.join(" ")
        ),
    );
    let group = |t: &str, procs: &[Process]| {
        let wants: Vec<String> = procs.iter().map(|p| unit(p) + ".service").collect();
        file(
            format!("{app}-{t}.target"),
            format!("[Unit]\nPartOf={app}.target\nWants={}", wants.join(" ")),
        )
    };
    let service = |t: &str, p: &Process| {
        file(
            format!("{}.service", unit(p)),
            format!(
                "[Unit]\n\
                 PartOf={app}-{t}.target\n\
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
                env = env_lines(p, |k, v| format!("Environment={k}={v}\n")),
                shell = ctx.shell,
                cmd = p.command,
            ),
        )
    };
    per_type(processes, master, group, service)
}

/// `APP.conf`, then per type `APP-TYPE.conf` followed by its `APP-TYPE-N.conf` jobs.
pub(crate) fn upstart(processes: &[Process], ctx: &Context) -> Vec<File> {
    let app = &ctx.app;
    let master = file(
        format!("{app}.conf"),
        "start on (started network-interface\n          \
         or started network-manager\n          \
         or started networking)\n\
         \n\
         stop on (stopping network-interface\n         \
         or stopping network-manager\n         \
         or stopping networking)"
            .to_string(),
    );
    let group = |t: &str, _: &[Process]| {
        file(
            format!("{app}-{t}.conf"),
            format!("start on starting {app}\nstop on stopping {app}"),
        )
    };
    let job = |t: &str, p: &Process| {
        file(
            format!("{app}-{}.conf", dashrepl(&p.name)),
            format!(
                "start on starting {app}-{t}\n\
                 stop on stopping {app}-{t}\n\
                 respawn\n\
                 \n\
                 {env}\n\
                 exec su - {user} -m -s {shell} -c 'cd {root}; exec {cmd}'",
                env = env_lines(p, |k, v| format!("env {k}={v}\n")),
                user = ctx.user,
                shell = ctx.shell,
                root = ctx.app_root,
                cmd = p.command,
            ),
        )
    };
    per_type(processes, master, group, job)
}

/// Per instance a service directory `APP-TYPE-N/` with an envdir `env/KEY`, `run` and
/// `log/run` (both executable).
pub(crate) fn runit(processes: &[Process], ctx: &Context) -> Vec<File> {
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
}
