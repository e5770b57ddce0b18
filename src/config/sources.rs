//! Which Procfile and env files to read (honcho's precedence plus the `environments/$ENV_NAME/`
//! convention), and reading them.

use super::{Inputs, OsEnv, envfile, procfile};
use crate::error::Error;
use std::path::{Path, PathBuf};

/// Where the Procfile and env files come from.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) procfile: PathBuf,
    /// Each env file and whether it was found.
    pub(crate) env_files: Vec<(PathBuf, bool)>,
    /// The merged env-file variables, later files winning (in first-seen order).
    pub(crate) env: Vec<(String, String)>,
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
pub(crate) type EnvFiles = (Vec<(PathBuf, bool)>, Vec<(String, String)>);

/// Reads env files, left to right; a missing file or a directory is skipped.
pub(crate) fn read_env_files(root: &Path, names: &[String]) -> Result<EnvFiles, Error> {
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
pub(crate) fn sources(common: &Inputs, os: &OsEnv) -> Result<Sources, Error> {
    let root = PathBuf::from(common.app_root.as_deref().unwrap_or("."));
    let env_name = os.get("ENV_NAME").filter(|v| !v.is_empty());
    let convention = common.procfile.is_none() && os.get("PROCFILE").is_none();
    let env_names: Vec<String> = match (&common.env, env_name.as_deref()) {
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
    let procfile = match (&common.procfile, from_files, os.get("PROCFILE"), env_name) {
        (Some(p), ..) => join(&root, p),
        (None, Some(p), ..) => join(&root, &p),
        (None, None, Some(p), _) => join(&root, &p),
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
pub(crate) fn load(common: &Inputs, os: &OsEnv) -> Result<(Sources, procfile::Procfile), Error> {
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
pub(crate) fn load_procfile(path: &Path) -> Result<procfile::Procfile, Error> {
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
