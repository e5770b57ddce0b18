//! Process roles: what each Procfile type does in the run's lifecycle beyond honcho's "start
//! all, the first to stop ends the run". Set by `start`'s options (`--before`, `--can-die`,
//! `--auto-restart`, `--restart-limit`, `--restart-delay`, `--after`, `--stop-signal`,
//! `--drain`), never by the
//! Procfile, which stays valid for honcho and Heroku. With none given (and no `release` type),
//! every accessor answers honcho's behaviour.

use std::time::Duration;

/// The validated roles of a run, by process type name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roles {
    /// Types run first, one after another, each to completion, in this order (the release
    /// phase); a type named `release` is one unless `--before` says otherwise.
    pub(crate) before: Vec<String>,
    /// Types whose stop ends nothing and sets no exit code.
    pub(crate) can_die: Vec<String>,
    /// Types started again when they stop (after a backoff).
    pub(crate) auto_restart: Vec<String>,
    /// Restarts allowed within `RESTART_WINDOW` before a type counts as stopped for good.
    pub(crate) restart_limit: u32,
    /// Wait before the first restart; doubled for each further one (up to 30 s), back to
    /// this after the process stayed up 10 s.
    pub(crate) restart_delay: Duration,
    /// `(type, dependencies)`: the type starts only when every dependency is ready.
    pub(crate) after: Vec<(String, Vec<String>)>,
    /// `(type, signal number)`: sent to that type's groups at shutdown instead of SIGTERM.
    pub(crate) stop_signal: Vec<(String, i32)>,
    /// Time between a shutdown signal and the first stop signal, while `/health` says 503.
    pub(crate) drain: Duration,
}

/// The window in which `restart_limit` restarts are allowed.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// `--restart-limit`'s default.
pub(crate) const DEFAULT_RESTART_LIMIT: u32 = 5;
/// `--restart-delay`'s default.
pub(crate) const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(200);

impl Default for Roles {
    fn default() -> Self {
        Roles {
            before: Vec::new(),
            can_die: Vec::new(),
            auto_restart: Vec::new(),
            restart_limit: DEFAULT_RESTART_LIMIT,
            restart_delay: DEFAULT_RESTART_DELAY,
            after: Vec::new(),
            stop_signal: Vec::new(),
            drain: Duration::ZERO,
        }
    }
}

impl Roles {
    /// Position of `type_name` in the release phase, if it is a `--before` type.
    pub(crate) fn before_index(&self, type_name: &str) -> Option<usize> {
        self.before.iter().position(|t| t == type_name)
    }

    pub(crate) fn can_die(&self, type_name: &str) -> bool {
        self.can_die.iter().any(|t| t == type_name)
    }

    pub(crate) fn auto_restart(&self, type_name: &str) -> bool {
        self.auto_restart.iter().any(|t| t == type_name)
    }

    /// The types `type_name` waits for.
    pub(crate) fn deps(&self, type_name: &str) -> &[String] {
        self.after
            .iter()
            .find(|(t, _)| t == type_name)
            .map_or(&[], |(_, deps)| deps.as_slice())
    }

    /// The signal that stops `type_name` (SIGTERM unless `--stop-signal` says otherwise).
    pub(crate) fn stop_signal(&self, type_name: &str) -> i32 {
        self.stop_signal
            .iter()
            .find(|(t, _)| t == type_name)
            .map_or(libc::SIGTERM, |(_, s)| *s)
    }
}

/// `start`'s role options as given (names not yet checked against the Procfile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleOptions {
    /// `--before`; `None`: not given (then a `release` type is one, see `resolve`).
    pub(crate) before: Option<Vec<String>>,
    pub(crate) can_die: Vec<String>,
    pub(crate) auto_restart: Vec<String>,
    pub(crate) restart_limit: u32,
    pub(crate) restart_delay: Duration,
    /// `NAME=DEP[+DEP...]` items.
    pub(crate) after: Vec<String>,
    /// `NAME=SIGNAL` items.
    pub(crate) stop_signal: Vec<String>,
    pub(crate) drain: Duration,
}

impl Default for RoleOptions {
    fn default() -> Self {
        RoleOptions {
            before: None,
            can_die: Vec::new(),
            auto_restart: Vec::new(),
            restart_limit: DEFAULT_RESTART_LIMIT,
            restart_delay: DEFAULT_RESTART_DELAY,
            after: Vec::new(),
            stop_signal: Vec::new(),
            drain: Duration::ZERO,
        }
    }
}

/// A role option that does not fit the Procfile: a usage error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleError {
    /// The option, e.g. `--after`.
    pub(crate) option: &'static str,
    pub(crate) message: String,
}

/// The name of the type that is a `--before` type unless `--before` is given (Heroku's release
/// phase).
pub(crate) const RELEASE: &str = "release";
/// The keyword for every type in `--can-die` and `--auto-restart`.
pub(crate) const ALL: &str = "all";

/// Turns the role options into `Roles` for a run of `selected` (the Procfile types that have
/// instances, in start order) out of the Procfile's `types`. `named`: the types to start were
/// named on the command line.
///
/// The rules, in the order they are checked (each failure is one `RoleError`):
/// 1. Lists are comma-separated; blanks around names and empty items are dropped (`--before ''`
///    is the empty list). Every name must be a type of the Procfile, whether or not it is
///    started; `all` is a keyword in `--can-die` and `--auto-restart` only. Repeated names count
///    once; for `--stop-signal` the last one wins, and repeated `--after NAME` entries add up.
/// 2. `--before` defaults to `release` when the Procfile has such a type and no type is named
///    on the command line (`procrun start release` runs just it, as honcho would).
/// 3. A `--before` type runs once, to completion, ahead of everything else, and its failure
///    stops the run. So it cannot also be `--can-die` (its failure would not count),
///    `--auto-restart` (it would never complete), or in `--after` on either side (it starts
///    before any dependency could be ready, and everything waits for it anyway). `all` in
///    `--can-die` and `--auto-restart` means every type except the `--before` ones.
/// 4. `--can-die` together with `--auto-restart` is fine: such a type is restarted, and when it
///    reaches the restart limit it stops for good without ending the run.
/// 5. `--after NAME=DEP`: NAME and every DEP are types; no cycle (`a=a`, `a=b,b=a`). A
///    `--stop-signal` is a signal name (`QUIT`, `SIGQUIT`, any case) or number (1-64).
/// 6. Then everything is narrowed to the types that are started: an entry about a type that is
///    not started is dropped, and so is a dependency that is not started (NAME does not wait
///    for it), so `ENV PROCRUN_AFTER=...` in an image still lets `procrun start release` run.
pub(crate) fn resolve(
    opts: &RoleOptions,
    types: &[&str],
    selected: &[&str],
    named: bool,
) -> Result<Roles, RoleError> {
    let known = |option: &'static str, name: &str| -> Result<(), RoleError> {
        if types.contains(&name) {
            Ok(())
        } else {
            Err(RoleError {
                option,
                message: format!("no process type `{name}` in the Procfile"),
            })
        }
    };
    // 1, 2: names.
    let (before, before_implicit) = match &opts.before {
        Some(list) => (names(list, "--before", false, &known)?.names, false),
        None if !named && types.contains(&RELEASE) => (vec![RELEASE.to_string()], true),
        None => (Vec::new(), false),
    };
    let can_die = names(&opts.can_die, "--can-die", true, &known)?;
    let auto_restart = names(&opts.auto_restart, "--auto-restart", true, &known)?;
    let after = parse_after(&opts.after, &known)?;
    let stop_signal = parse_stop_signals(&opts.stop_signal, &known)?;
    // 3: --before types have no other lifecycle role.
    let is_before = |name: &str| before.iter().any(|b| b == name);
    let conflict = |option: &'static str, name: &str, why: &str| {
        let default = if before_implicit {
            " (a type named `release` is one by default; --before '' turns that off)"
        } else {
            ""
        };
        RoleError {
            option,
            message: format!("`{name}` is a --before type{default}: {why}"),
        }
    };
    for name in &can_die.names {
        if is_before(name) {
            return Err(conflict(
                "--can-die",
                name,
                "it runs once, first, and its failure stops the run",
            ));
        }
    }
    for name in &auto_restart.names {
        if is_before(name) {
            return Err(conflict(
                "--auto-restart",
                name,
                "it runs once, to completion, before the others start",
            ));
        }
    }
    for (name, deps) in &after {
        for t in std::iter::once(name).chain(deps) {
            if is_before(t) {
                return Err(conflict(
                    "--after",
                    t,
                    "it runs to completion before anything else starts",
                ));
            }
        }
    }
    // 5: no cycles.
    if let Some(cycle) = find_cycle(&after) {
        return Err(RoleError {
            option: "--after",
            message: format!("cycle: {}", cycle.join(" -> ")),
        });
    }
    // 6: narrowed to what is started.
    let started = |name: &str| selected.contains(&name);
    let expand = |list: Names| -> Vec<String> {
        if list.all {
            selected
                .iter()
                .filter(|t| !is_before(t))
                .map(|t| t.to_string())
                .collect()
        } else {
            list.names.into_iter().filter(|n| started(n)).collect()
        }
    };
    let after = after
        .into_iter()
        .filter(|(name, _)| started(name))
        .map(|(name, deps)| (name, deps.into_iter().filter(|d| started(d)).collect()))
        .filter(|(_, deps): &(String, Vec<String>)| !deps.is_empty())
        .collect();
    Ok(Roles {
        before: before.iter().filter(|n| started(n)).cloned().collect(),
        can_die: expand(can_die),
        auto_restart: expand(auto_restart),
        restart_limit: opts.restart_limit,
        restart_delay: opts.restart_delay,
        after,
        stop_signal: stop_signal
            .into_iter()
            .filter(|(n, _)| started(n))
            .collect(),
        drain: opts.drain,
    })
}

/// A list of names, or `all`.
struct Names {
    names: Vec<String>,
    all: bool,
}

type Known<'a> = dyn Fn(&'static str, &str) -> Result<(), RoleError> + 'a;

fn names(
    list: &[String],
    option: &'static str,
    allow_all: bool,
    known: &Known,
) -> Result<Names, RoleError> {
    let mut out = Names {
        names: Vec::new(),
        all: false,
    };
    for name in items(list) {
        if allow_all && name == ALL {
            out.all = true;
            continue;
        }
        known(option, name)?;
        if !out.names.iter().any(|n| n == name) {
            out.names.push(name.to_string());
        }
    }
    if out.all {
        out.names.clear();
    }
    Ok(out)
}

/// The items of a list option, in order: each value split on `,`, trimmed, empty ones skipped
/// (clap splits values on `,` too; a value from elsewhere may still hold commas).
fn items(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `NAME=DEP[+DEP...]` items → (name, deps), repeated names merged, in first-seen order.
fn parse_after(items: &[String], known: &Known) -> Result<Vec<(String, Vec<String>)>, RoleError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for item in self::items(items) {
        let bad = || RoleError {
            option: "--after",
            message: format!("`{item}` is not NAME=DEP[+DEP...]"),
        };
        let (name, deps) = item.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        let deps: Vec<&str> = deps.split('+').map(str::trim).collect();
        if name.is_empty() || deps.iter().any(|d| d.is_empty()) {
            return Err(bad());
        }
        known("--after", name)?;
        let slot = match out.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                out.push((name.to_string(), Vec::new()));
                out.len() - 1
            }
        };
        for dep in deps {
            known("--after", dep)?;
            if !out[slot].1.iter().any(|d| d == dep) {
                out[slot].1.push(dep.to_string());
            }
        }
    }
    Ok(out)
}

/// A dependency cycle in `after`, as the path that closes it (`a -> b -> a`).
fn find_cycle(after: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    fn deps<'a>(after: &'a [(String, Vec<String>)], name: &str) -> &'a [String] {
        after
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[], |(_, d)| d.as_slice())
    }
    // Depth-first from each entry; `path` is the current chain, `done` what has no cycle.
    fn visit(
        after: &[(String, Vec<String>)],
        name: &str,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if done.iter().any(|d| d == name) {
            return None;
        }
        path.push(name.to_string());
        for dep in deps(after, name) {
            if let Some(c) = visit(after, dep, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(name.to_string());
        None
    }
    let mut done = Vec::new();
    after
        .iter()
        .find_map(|(name, _)| visit(after, name, &mut Vec::new(), &mut done))
}

/// Parses a signal: a name with or without `SIG`, in any case (`QUIT`, `sigquit`), or a number
/// from 1 to 64.
pub(crate) fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// `NAME=SIGNAL` items → (name, signal number); the last one of a name wins.
fn parse_stop_signals(items: &[String], known: &Known) -> Result<Vec<(String, i32)>, RoleError> {
    let mut out: Vec<(String, i32)> = Vec::new();
    for item in self::items(items) {
        let bad = |why: &str| RoleError {
            option: "--stop-signal",
            message: format!("`{item}` {why}"),
        };
        let (name, signal) = item
            .split_once('=')
            .ok_or_else(|| bad("is not NAME=SIGNAL"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("is not NAME=SIGNAL"));
        }
        known("--stop-signal", name)?;
        let signal = parse_signal(signal)
            .ok_or_else(|| bad("does not name a signal (e.g. QUIT, SIGQUIT or 3)"))?;
        out.retain(|(n, _)| n != name);
        out.push((name.to_string(), signal));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            vec![s.to_string()]
        }
    }

    /// Options from `(option, value)` pairs.
    fn opts(pairs: &[(&str, &str)]) -> RoleOptions {
        let mut o = RoleOptions::default();
        for (k, v) in pairs {
            match *k {
                "before" => o.before = Some(list(v)),
                "can-die" => o.can_die = list(v),
                "auto-restart" => o.auto_restart = list(v),
                "after" => o.after = list(v),
                "stop-signal" => o.stop_signal = list(v),
                _ => panic!("{k}"),
            }
        }
        o
    }

    const TYPES: &[&str] = &["release", "migrate", "web", "worker", "nginx", "clock"];

    #[test]
    fn valid_roles_table() {
        type Check = fn(&Roles) -> bool;
        // (options, selected (None: all, not named), check)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a [&'a str]>, Check);
        let cases: &[Case] = &[
            // None given: release is the release phase.
            (&[], None, |r| {
                r.before == ["release"] && r.can_die.is_empty()
            }),
            (&[("before", "")], None, |r| r.before.is_empty()),
            (&[("before", " , ")], None, |r| r.before.is_empty()),
            (&[("before", "migrate,release")], None, |r| {
                r.before == ["migrate", "release"]
            }),
            (&[("before", "migrate, migrate")], None, |r| {
                r.before == ["migrate"]
            }),
            // Named on the command line: no implicit release; an explicit --before still holds.
            (&[], Some(&["release"]), |r| r.before.is_empty()),
            (&[("before", "release")], Some(&["release"]), |r| {
                r.before == ["release"]
            }),
            (
                &[("auto-restart", "release")],
                Some(&["release", "web"]),
                |r| r.auto_restart == ["release"],
            ),
            // all: every started type but the --before ones.
            (&[("auto-restart", "all")], None, |r| {
                r.auto_restart == ["migrate", "web", "worker", "nginx", "clock"]
            }),
            (
                &[("can-die", "all,web"), ("before", "migrate")],
                None,
                |r| r.can_die == ["release", "web", "worker", "nginx", "clock"],
            ),
            (&[("auto-restart", "all")], Some(&["web", "release"]), |r| {
                r.auto_restart == ["web", "release"] && r.before.is_empty()
            }),
            // can-die with auto-restart is fine.
            (
                &[("can-die", "worker"), ("auto-restart", "worker")],
                None,
                |r| r.can_die == ["worker"] && r.auto_restart("worker"),
            ),
            (&[("after", "nginx=web+worker,clock=web")], None, |r| {
                r.deps("nginx") == ["web", "worker"] && r.deps("clock") == ["web"]
            }),
            (&[("after", "nginx=web,nginx=worker+web")], None, |r| {
                r.deps("nginx") == ["web", "worker"]
            }),
            // Narrowed to what is started.
            (
                &[("after", "nginx=web+worker"), ("can-die", "clock")],
                Some(&["nginx", "web"]),
                |r| r.deps("nginx") == ["web"] && r.can_die.is_empty(),
            ),
            (&[("after", "nginx=worker")], Some(&["nginx"]), |r| {
                r.after.is_empty()
            }),
            (
                &[(
                    "stop-signal",
                    "nginx=QUIT,web=sigint,worker=9,clock=SIGUSR1,web=HUP",
                )],
                None,
                |r| {
                    r.stop_signal("nginx") == libc::SIGQUIT
                        && r.stop_signal("web") == libc::SIGHUP
                        && r.stop_signal("worker") == 9
                        && r.stop_signal("clock") == libc::SIGUSR1
                        && r.stop_signal("release") == libc::SIGTERM
                },
            ),
            (&[("stop-signal", "release=QUIT")], None, |r| {
                r.stop_signal("release") == libc::SIGQUIT
            }),
        ];
        for (pairs, selected, check) in cases {
            let sel = selected.unwrap_or(TYPES);
            let roles = resolve(&opts(pairs), TYPES, sel, selected.is_some())
                .unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"));
            assert!(check(&roles), "{pairs:?} {selected:?}: {roles:?}");
        }
        let none = resolve(&RoleOptions::default(), &["web"], &["web"], false).unwrap();
        assert_eq!(none, Roles::default(), "honcho's behaviour without options");
    }

    #[test]
    fn invalid_roles_table() {
        // (options, option named, start of the message)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("can-die", "wrker")],
                "--can-die",
                "no process type `wrker` in the Procfile",
            ),
            (&[("before", "all")], "--before", "no process type `all`"),
            (&[("after", "web=db")], "--after", "no process type `db`"),
            (
                &[("after", "nope=web")],
                "--after",
                "no process type `nope`",
            ),
            (
                &[("after", "web")],
                "--after",
                "`web` is not NAME=DEP[+DEP...]",
            ),
            (&[("after", "web=")], "--after", "`web=` is not NAME=DEP"),
            (&[("after", "=web")], "--after", "`=web` is not NAME=DEP"),
            (
                &[("after", "web=worker++clock")],
                "--after",
                "`web=worker++clock` is not",
            ),
            (
                &[("stop-signal", "nginx")],
                "--stop-signal",
                "`nginx` is not NAME=SIGNAL",
            ),
            (
                &[("stop-signal", "nginx=QUITE")],
                "--stop-signal",
                "`nginx=QUITE` does not name a signal",
            ),
            (
                &[("stop-signal", "nginx=0")],
                "--stop-signal",
                "`nginx=0` does not name",
            ),
            (
                &[("stop-signal", "nginx=65")],
                "--stop-signal",
                "`nginx=65` does not name",
            ),
            (
                &[("stop-signal", "ngx=QUIT")],
                "--stop-signal",
                "no process type `ngx`",
            ),
            // --before types have no other role; the implicit release says how to turn it off.
            (
                &[("auto-restart", "release")],
                "--auto-restart",
                "`release` is a --before type (a type named `release` is one by default; --before '' turns that off): it runs once",
            ),
            (
                &[("before", "migrate"), ("auto-restart", "migrate")],
                "--auto-restart",
                "`migrate` is a --before type: it runs once",
            ),
            (
                &[("before", "migrate"), ("can-die", "migrate")],
                "--can-die",
                "`migrate` is a --before type: it runs once, first",
            ),
            (
                &[("after", "web=release")],
                "--after",
                "`release` is a --before type",
            ),
            (
                &[("after", "release=web")],
                "--after",
                "`release` is a --before type",
            ),
            // Cycles.
            (&[("after", "web=web")], "--after", "cycle: web -> web"),
            (
                &[("after", "web=worker,worker=clock+web")],
                "--after",
                "cycle: web -> worker -> web",
            ),
            (
                &[("after", "nginx=web,web=worker,worker=clock,clock=web")],
                "--after",
                "cycle: web -> worker -> clock -> web",
            ),
        ];
        for (pairs, option, start) in cases {
            let e = resolve(&opts(pairs), TYPES, TYPES, false).unwrap_err();
            assert_eq!(e.option, *option, "{pairs:?}: {e:?}");
            assert!(e.message.starts_with(start), "{pairs:?}: {}", e.message);
        }
        // Conflicts hold even for types that are not started.
        let e = resolve(
            &opts(&[("before", "migrate"), ("can-die", "migrate")]),
            TYPES,
            &["web"],
            true,
        );
        assert!(e.is_err());
    }

    #[test]
    fn signals() {
        let cases: &[(&str, Option<i32>)] = &[
            ("QUIT", Some(libc::SIGQUIT)),
            ("SIGQUIT", Some(libc::SIGQUIT)),
            ("quit", Some(libc::SIGQUIT)),
            ("SigTerm", Some(libc::SIGTERM)),
            (" INT ", Some(libc::SIGINT)),
            ("3", Some(3)),
            ("34", Some(34)),
            ("64", Some(64)),
            ("0", None),
            ("-1", None),
            ("65", None),
            ("", None),
            ("SIG", None),
            ("KILLME", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_signal(text), *want, "{text:?}");
        }
    }
}
