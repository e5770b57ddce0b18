//! Arguments + files → a validated configuration. The only module that reads the Procfile and
//! env files; it never changes procrun's own environment (the OS environment is passed in).

use crate::cli::{Common, Expand};
use crate::error::Error;
use crate::{envfile, procfile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The OS environment as given to procrun, in order.
pub type OsEnv = Vec<(String, String)>;

fn os_get<'a>(os: &'a OsEnv, key: &str) -> Option<&'a str> {
    os.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Where the Procfile and env files come from.
#[derive(Debug)]
pub struct Sources {
    pub procfile: PathBuf,
    /// Each env file and whether it was found.
    pub env_files: Vec<(PathBuf, bool)>,
    /// The merged env-file variables, later files winning (in first-seen order).
    pub env: Vec<(String, String)>,
}

fn join(root: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() || root == Path::new(".") {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Each env file with whether it was found, and the merged variables.
pub type EnvFiles = (Vec<(PathBuf, bool)>, Vec<(String, String)>);

/// Reads env files, left to right; a missing file or a directory is skipped.
pub fn read_env_files(root: &Path, names: &[String]) -> Result<EnvFiles, Error> {
    let mut files = Vec::new();
    let mut merged: Vec<(String, String)> = Vec::new();
    for name in names {
        let path = join(root, name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                files.push((path, false));
                continue;
            }
        };
        let text =
            String::from_utf8(bytes).map_err(|_| Error::EnvNotUtf8 { path: path.clone() })?;
        let vars = envfile::parse(&text).map_err(|e| Error::EnvSyntax {
            path: path.clone(),
            line: e.line,
            message: e.message,
        })?;
        for (k, v) in vars {
            match merged.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => merged.push((k, v)),
            }
        }
        files.push((path, true));
    }
    Ok((files, merged))
}

/// Resolves the Procfile and env files with honcho's precedence plus the
/// `environments/$ENV_NAME/` convention.
pub fn sources(common: &Common, os: &OsEnv) -> Result<Sources, Error> {
    let root = PathBuf::from(common.app_root.as_deref().unwrap_or("."));
    let env_name = os_get(os, "ENV_NAME").filter(|v| !v.is_empty());
    let convention = common.procfile.is_none() && os_get(os, "PROCFILE").is_none();
    let env_names: Vec<String> = match (&common.env, env_name) {
        (Some(list), _) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(name)) if convention => vec![format!("environments/{name}/.env")],
        (None, _) => vec![".env".to_string()],
    };
    let (env_files, env) = read_env_files(&root, &env_names)?;
    let from_files = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PROCFILE")
        .map(|(_, v)| v.clone());
    let procfile = match (
        &common.procfile,
        from_files,
        os_get(os, "PROCFILE"),
        env_name,
    ) {
        (Some(p), ..) => join(&root, p),
        (None, Some(p), ..) => join(&root, &p),
        (None, None, Some(p), _) => join(&root, p),
        (None, None, None, Some(name)) => join(&root, &format!("environments/{name}/Procfile")),
        (None, None, None, None) => join(&root, "Procfile"),
    };
    Ok(Sources {
        procfile,
        env_files,
        env,
    })
}

/// Resolves the sources and parses the Procfile, warning (file:line) about ignored lines.
pub fn load(common: &Common, os: &OsEnv) -> Result<(Sources, procfile::Procfile), Error> {
    let sources = sources(common, os)?;
    let pf = load_procfile(&sources.procfile)?;
    for (line, message) in &pf.warnings {
        crate::warn(&format!(
            "warning: {}:{line}: {message}",
            sources.procfile.display()
        ));
    }
    Ok((sources, pf))
}

/// Reads and parses the Procfile; warnings go to the caller.
pub fn load_procfile(path: &Path) -> Result<procfile::Procfile, Error> {
    if !path.is_file() {
        return Err(Error::ProcfileMissing {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|_| Error::ProcfileMissing {
        path: path.to_path_buf(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::ProcfileNotUtf8 {
        path: path.to_path_buf(),
    })?;
    procfile::parse(&text).map_err(|e| match e {
        procfile::ProcfileError::Duplicate {
            name,
            first,
            second,
        } => Error::DuplicateProcess {
            path: path.to_path_buf(),
            name,
            first,
            second,
        },
    })
}

/// One process to run: an instance of a Procfile type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `type.N`
    pub name: String,
    /// The Procfile type name.
    pub type_name: String,
    pub command: String,
    pub port: u32,
}

/// Parses `-c name=N,...`. Negative counts mean 0.
pub fn parse_concurrency(text: &str) -> Result<HashMap<String, u32>, Error> {
    let mut map = HashMap::new();
    for item in text.split(',') {
        let bad = || Error::InvalidConcurrency {
            value: text.to_string(),
        };
        let (name, n) = item.split_once('=').ok_or_else(bad)?;
        let n: i64 = n.trim().parse().map_err(|_| bad())?;
        map.insert(name.to_string(), n.clamp(0, 10_000) as u32);
    }
    Ok(map)
}

fn parse_port(value: &str, source: &'static str) -> Result<u32, Error> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p <= 65535)
        .ok_or_else(|| Error::InvalidPort {
            value: value.to_string(),
            source,
        })
}

/// Expands the Procfile into instances with names and ports, as honcho does.
///
/// `names` are the types to run, in that order (empty: all, in Procfile order).
pub fn instances(
    pf: &procfile::Procfile,
    args: &Expand,
    names: &[String],
    env: &[(String, String)],
    os: &OsEnv,
) -> Result<Vec<Instance>, Error> {
    let base = if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == "PORT") {
        parse_port(v, "PORT in the env file")?
    } else if let Some(p) = &args.port {
        parse_port(p, "--port")?
    } else if let Some(p) = os_get(os, "PORT") {
        parse_port(p, "PORT in the environment")?
    } else {
        5000
    };
    let concurrency = match &args.concurrency {
        Some(c) => parse_concurrency(c)?,
        None => HashMap::new(),
    };
    let mut selected: Vec<&procfile::ProcessSpec> = Vec::new();
    if names.is_empty() {
        selected.extend(pf.processes.iter());
    } else {
        for name in names {
            let spec = pf
                .processes
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| Error::UnknownProcess { name: name.clone() })?;
            if !selected.iter().any(|s| s.name == spec.name) {
                selected.push(spec);
            }
        }
    }
    let mut out = Vec::new();
    for (k, spec) in selected.iter().enumerate() {
        let count = concurrency.get(&spec.name).copied().unwrap_or(1);
        for i in 1..=count {
            out.push(Instance {
                name: format!("{}.{}", spec.name, i),
                type_name: spec.name.clone(),
                command: spec.command.clone(),
                port: base + 100 * k as u32 + (i - 1),
            });
        }
    }
    Ok(out)
}

/// The variables honcho gives an instance on top of the OS environment, in order of
/// precedence: `HONCHO_PROCESS_NAME`, then the env files, then `PORT` (also what `export`
/// writes).
pub fn honcho_env(env: &[(String, String)], inst: &Instance) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len() + 3);
    set_var(&mut out, "HONCHO_PROCESS_NAME", &inst.name);
    for (k, v) in env {
        set_var(&mut out, k, v);
    }
    set_var(&mut out, "PORT", &inst.port.to_string());
    out
}

/// Sets `key` in an ordered variable list: a key already present keeps its place.
fn set_var(vars: &mut Vec<(String, String)>, key: &str, value: &str) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => vars.push((key.to_string(), value.to_string())),
    }
}

/// What a child's environment adds to the inherited OS environment: `honcho_env`, plus
/// `PYTHONUNBUFFERED=1` unless the OS environment or an env file defines it.
pub fn child_env(os: &OsEnv, env: &[(String, String)], inst: &Instance) -> Vec<(String, String)> {
    let mut out = honcho_env(env, inst);
    if os_get(os, "PYTHONUNBUFFERED").is_none() && !env.iter().any(|(k, _)| k == "PYTHONUNBUFFERED")
    {
        set_var(&mut out, "PYTHONUNBUFFERED", "1");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::StartArgs;

    /// `instances` with the arguments of `start`.
    fn expand(
        pf: &procfile::Procfile,
        args: &StartArgs,
        env: &[(String, String)],
        os: &OsEnv,
    ) -> Result<Vec<Instance>, Error> {
        instances(pf, &args.expand, &args.processes, env, os)
    }

    fn pf(text: &str) -> procfile::Procfile {
        procfile::parse(text).unwrap()
    }

    #[test]
    fn ports_and_names() {
        let args = StartArgs {
            expand: Expand {
                concurrency: Some("web=2,worker=3".into()),
                port: Some("6000".into()),
            },
            ..Default::default()
        };
        let got = expand(&pf("web: a\nworker: b\nclock: c\n"), &args, &[], &vec![]).unwrap();
        let got: Vec<(String, u32)> = got.into_iter().map(|i| (i.name, i.port)).collect();
        let want = [
            ("web.1", 6000),
            ("web.2", 6001),
            ("worker.1", 6100),
            ("worker.2", 6101),
            ("worker.3", 6102),
            ("clock.1", 6200),
        ];
        assert_eq!(got, want.map(|(n, p)| (n.to_string(), p)).to_vec());
    }

    #[test]
    fn selection_order_zero_concurrency_and_port_precedence() {
        let args = StartArgs {
            processes: vec!["clock".into(), "web".into(), "clock".into()],
            expand: Expand {
                concurrency: Some("clock=0".into()),
                port: None,
            },
            ..Default::default()
        };
        let os = vec![("PORT".to_string(), "7000".to_string())];
        let got = expand(&pf("web: a\nclock: c\n"), &args, &[], &os).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].port), ("web.1", 7100));
        // env file PORT beats -p beats OS PORT
        let args = StartArgs {
            expand: Expand {
                port: Some("6000".into()),
                concurrency: None,
            },
            ..Default::default()
        };
        let env = vec![("PORT".to_string(), "8000".to_string())];
        assert_eq!(
            expand(&pf("web: a\n"), &args, &env, &os).unwrap()[0].port,
            8000
        );
        assert_eq!(
            expand(&pf("web: a\n"), &args, &[], &os).unwrap()[0].port,
            6000
        );
    }

    #[test]
    fn bad_values() {
        let bad_c = ["web", "web=x", "web=2,", "=x"];
        for c in bad_c {
            assert!(parse_concurrency(c).is_err(), "{c}");
        }
        assert_eq!(parse_concurrency("web=-1").unwrap()["web"], 0);
        assert_eq!(parse_concurrency(" worker=3").unwrap()[" worker"], 3);
        let args = StartArgs {
            expand: Expand {
                port: Some("abc".into()),
                concurrency: None,
            },
            ..Default::default()
        };
        let e = expand(&pf("web: a\n"), &args, &[], &vec![]).unwrap_err();
        assert_eq!(e.to_string(), "invalid value for port: 'abc' (from --port)");
        let args = StartArgs {
            processes: vec!["nope".into()],
            ..Default::default()
        };
        let e = expand(&pf("web: a\n"), &args, &[], &vec![]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Process type 'nope' does not exist in Procfile"
        );
    }

    #[test]
    fn child_environment() {
        let os = vec![
            ("A".to_string(), "os".to_string()),
            ("HONCHO_PROCESS_NAME".to_string(), "x".to_string()),
        ];
        let env = vec![
            ("A".to_string(), "file".to_string()),
            ("PORT".to_string(), "1".to_string()),
        ];
        let inst = Instance {
            name: "web.1".into(),
            type_name: "web".into(),
            command: "c".into(),
            port: 5000,
        };
        let got: HashMap<String, String> = child_env(&os, &env, &inst).into_iter().collect();
        assert_eq!(got["A"], "file");
        assert_eq!(got["HONCHO_PROCESS_NAME"], "web.1");
        assert_eq!(got["PORT"], "5000");
        assert_eq!(got["PYTHONUNBUFFERED"], "1");
        // Defined by the OS environment: not overridden (the overlay does not mention it).
        let os = vec![("PYTHONUNBUFFERED".to_string(), "".to_string())];
        let got: HashMap<String, String> = child_env(&os, &[], &inst).into_iter().collect();
        assert!(!got.contains_key("PYTHONUNBUFFERED"));
    }
}
