//! Arguments + files → a validated configuration. The only module that reads the Procfile and
//! env files; it never changes procrun's own environment (the OS environment is passed in).
//!
//! `sources` resolves which files to read (honcho's precedence plus the
//! `environments/$ENV_NAME/` convention) and reads them (`read`: fail closed, interruptible)
//! with the pure parsers `procfile` and `envfile`; `instances` expands the Procfile into
//! numbered instances with ports and the variables each child gets; `roles` checks the process
//! roles against the Procfile; `limits` checks what `execve` would refuse.
//!
//! `start` builds the whole configuration of `procrun start` (and `check`, which runs the same
//! validation): everything that can be wrong with the inputs is found there, before anything
//! is started.

pub(crate) mod envfile;
mod instances;
mod limits;
pub(crate) mod procfile;
mod read;
mod roles;
mod sources;

pub(crate) use instances::{Instance, child_env, honcho_env, instances};
pub(crate) use limits::ExecLimits;
pub(crate) use roles::{RESTART_WINDOW, RoleOptions, Roles};
pub(crate) use sources::{Sources, load, sources};

use crate::error::Error;
use std::collections::HashSet;
use std::ffi::OsString;

/// FNV-1a: a hash for variable names, much cheaper than std's SipHash (which resists flooding
/// by untrusted keys, not a concern for procrun's own configuration files).
#[derive(Default)]
pub(crate) struct Fnv(u64);

/// A `HashMap`/`HashSet` hasher for variable names.
pub(crate) type FastHash = std::hash::BuildHasherDefault<Fnv>;

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Where the Procfile and env files are (honcho's common options).
#[derive(Debug, Clone, Default)]
pub(crate) struct Inputs {
    /// `-d`: the directory the Procfile and env files are resolved against.
    pub(crate) app_root: Option<String>,
    /// `-f`: the Procfile.
    pub(crate) procfile: Option<String>,
    /// `-e`: comma-separated env files.
    pub(crate) env: Option<String>,
}

/// How the Procfile's types become numbered instances with ports (`start` and `export`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Expand {
    /// `-p`: the base port, unparsed.
    pub(crate) port: Option<String>,
    /// `-c name=N,...`, unparsed.
    pub(crate) concurrency: Option<String>,
    /// How to name where `port` came from in messages (empty: `--port`).
    pub(crate) port_source: String,
}

/// What `start` (and `check`) were asked to run, unparsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartOptions {
    pub(crate) expand: Expand,
    /// The types named on the command line, in order (empty: all).
    pub(crate) processes: Vec<String>,
    /// `-q name,...`.
    pub(crate) quiet: Option<String>,
    /// `--ready` items.
    pub(crate) ready: Vec<String>,
    pub(crate) roles: RoleOptions,
}

/// The validated configuration of a run: nothing in it can make a process fail to start
/// (short of the system running out of resources).
#[derive(Debug)]
pub(crate) struct StartConfig {
    pub(crate) sources: Sources,
    /// The Procfile's types, in file order.
    pub(crate) types: Vec<String>,
    pub(crate) instances: Vec<Instance>,
    /// Each instance's variables on top of procrun's environment.
    pub(crate) overlays: Vec<Vec<(String, String)>>,
    /// Types whose output is dropped.
    pub(crate) quiet: HashSet<String>,
    /// Readiness checks by type (the last one given for a type wins).
    pub(crate) ready: Vec<(String, Ready)>,
    pub(crate) roles: Roles,
}

/// Reads and validates everything `procrun start` needs: the Procfile and env files, ports and
/// instances, readiness checks, process roles, and what `execve` would refuse (NUL bytes are
/// refused by the parsers, sizes against `limits`).
pub(crate) fn start(
    inputs: &Inputs,
    opts: &StartOptions,
    os: &OsEnv,
    limits: &ExecLimits,
) -> Result<StartConfig, Error> {
    let (sources, pf) = load(inputs, os)?;
    limits::check_env_files(limits, &sources)?;
    let instances = instances(&pf, &opts.expand, &opts.processes, &sources.env, os)?;
    let types: Vec<String> = pf.processes.iter().map(|p| p.name.clone()).collect();
    let type_refs: Vec<&str> = types.iter().map(String::as_str).collect();
    let mut selected: Vec<&str> = Vec::new();
    for i in &instances {
        if !selected.contains(&i.type_name.as_str()) {
            selected.push(&i.type_name);
        }
    }
    let roles = roles::resolve(
        &opts.roles,
        &type_refs,
        &selected,
        !opts.processes.is_empty(),
    )
    .map_err(|e| Error::Usage {
        option: e.option.to_string(),
        message: e.message,
    })?;
    let ready = ready_checks(&opts.ready, &type_refs, &selected)?;
    let quiet: HashSet<String> = opts
        .quiet
        .as_deref()
        .map(|q| q.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let overlays: Vec<Vec<(String, String)>> = instances
        .iter()
        .map(|i| child_env(os, &sources.env, i))
        .collect();
    let line = |name: &str| {
        pf.processes
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| p.line)
    };
    limits::check_instances(
        limits,
        os,
        &instances,
        &overlays,
        &sources.procfile.display().to_string(),
        &line,
    )?;
    Ok(StartConfig {
        sources,
        types,
        instances,
        overlays,
        quiet,
        ready,
        roles,
    })
}

/// Reads and validates what `procrun run ARGV` needs: the env files (no Procfile).
pub(crate) fn run(
    inputs: &Inputs,
    os: &OsEnv,
    argv: &[String],
    limits: &ExecLimits,
) -> Result<Sources, Error> {
    let sources = sources(inputs, os)?;
    limits::check_run(limits, os, &sources, argv)?;
    Ok(sources)
}

/// `--ready` items as (type, check), the last one of a type winning. Every type must be in
/// the Procfile; checks of types that are not started are dropped (as their roles are), so an
/// image's `PROCRUN_READY` does not stop `procrun start release`.
fn ready_checks(
    items: &[String],
    types: &[&str],
    started: &[&str],
) -> Result<Vec<(String, Ready)>, Error> {
    let mut checks: Vec<(String, Ready)> = Vec::new();
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (name, ready) = parse_ready(item).ok_or_else(|| Error::InvalidReady {
            value: item.clone(),
            reason: None,
        })?;
        if !types.contains(&name.as_str()) {
            return Err(Error::InvalidReady {
                value: item.clone(),
                reason: Some(format!("the Procfile has no process type `{name}`")),
            });
        }
        checks.retain(|(n, _)| *n != name);
        if started.contains(&name.as_str()) {
            checks.push((name, ready));
        }
    }
    Ok(checks)
}

/// procrun's environment as it was given, read once at start-up and never changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct OsEnv {
    vars: Vec<(OsString, OsString)>,
}

impl OsEnv {
    /// The process's environment.
    pub(crate) fn inherit() -> OsEnv {
        OsEnv {
            vars: std::env::vars_os().collect(),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> OsEnv {
        OsEnv {
            vars: pairs.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// The raw value of `key`, if set.
    pub(crate) fn get_os(&self, key: &str) -> Option<OsString> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// The value of `key` (invalid UTF-8 replaced), if set.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    /// Every variable, in order.
    pub(crate) fn vars(&self) -> &[(OsString, OsString)] {
        &self.vars
    }
}

/// A readiness check (`--ready name=tcp` or `name=http:/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ready {
    /// `$PORT` accepts connections on 127.0.0.1.
    Tcp,
    /// GET on 127.0.0.1:`$PORT` answers 200-399.
    Http(String),
}

impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ready::Tcp => write!(f, "tcp"),
            Ready::Http(path) => write!(f, "http:{path}"),
        }
    }
}

/// Parses one `--ready` item: `name=tcp`, `name=http:/path` (or `name=http`, path `/`).
pub(crate) fn parse_ready(item: &str) -> Option<(String, Ready)> {
    let (name, check) = item.trim().split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let check = check.trim();
    let ready = if check == "tcp" {
        Ready::Tcp
    } else if check == "http" {
        Ready::Http("/".into())
    } else if let Some(path) = check.strip_prefix("http:") {
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        Ready::Http(path.to_string())
    } else {
        return None;
    };
    Some((name.to_string(), ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_specs() {
        assert_eq!(parse_ready("web=tcp"), Some(("web".into(), Ready::Tcp)));
        assert_eq!(
            parse_ready("web=http:/health"),
            Some(("web".into(), Ready::Http("/health".into())))
        );
        assert_eq!(
            parse_ready("web=http"),
            Some(("web".into(), Ready::Http("/".into())))
        );
        for bad in ["web", "=tcp", "web=udp", "web=http:health", "web=http:/a b"] {
            assert_eq!(parse_ready(bad), None, "{bad}");
        }
    }

    #[test]
    fn os_env_lookup() {
        let os = OsEnv::from_pairs(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(os.get("A").as_deref(), Some("3"));
        assert_eq!(os.get("C"), None);
    }
}
