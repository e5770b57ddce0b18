//! Arguments + files → a validated configuration. The only module that reads the Procfile and
//! env files; it never changes procrun's own environment (the OS environment is passed in).
//!
//! `sources` resolves which files to read (honcho's precedence plus the
//! `environments/$ENV_NAME/` convention) and reads them with the pure parsers `procfile` and
//! `envfile`; `instances` expands the Procfile into numbered instances with ports and the
//! variables each child gets.

pub(crate) mod envfile;
mod instances;
pub(crate) mod procfile;
// Not consumed yet: the supervisor's lifecycle per process is being built on it.
#[allow(dead_code)]
mod roles;
mod sources;

pub(crate) use instances::{Instance, child_env, honcho_env, instances};
#[allow(unused_imports)]
pub(crate) use roles::{DEFAULT_RESTART_LIMIT, RESTART_WINDOW, Roles};
pub(crate) use sources::{load, sources};

use std::ffi::OsString;

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
