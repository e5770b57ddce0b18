//! Which Procfile and env files to read (honcho's precedence plus the `environments/$ENV_NAME/`
//! convention), and reading them: only a missing file is skipped (an env file) or reported as
//! missing (the Procfile); anything that exists but cannot be read is an error.

use super::{FastHash, Inputs, OsEnv, envfile, procfile, read};
use crate::error::Error;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the Procfile and env files come from.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) procfile: PathBuf,
    /// `ENV_NAME`, when the convention chose the Procfile.
    pub(crate) env_name: Option<String>,
    /// Each env file and whether it exists.
    pub(crate) env_files: Vec<(PathBuf, bool)>,
    /// The merged env-file variables, later files winning (in first-seen order).
    pub(crate) env: Vec<(String, String)>,
    /// Where each of `env` was last set: (index in `env_files`, line).
    pub(crate) origins: Vec<(usize, usize)>,
}

impl Sources {
    /// `path:line` of the env-file variable at `index` in `env`.
    pub(crate) fn origin(&self, index: usize) -> String {
        match self.origins.get(index) {
            Some(&(file, line)) => format!(
                "{}:{line}",
                self.env_files
                    .get(file)
                    .map(|f| f.0.display().to_string())
                    .unwrap_or_default()
            ),
            None => String::new(),
        }
    }
}

fn join(root: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() || root == Path::new(".") {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Env files read and merged.
#[derive(Debug, Default)]
pub(crate) struct EnvFiles {
    /// Each file and whether it exists.
    pub(crate) files: Vec<(PathBuf, bool)>,
    /// The merged variables, later ones winning, in first-seen order.
    pub(crate) vars: Vec<(String, String)>,
    /// (index in `files`, line) of each variable's last assignment.
    pub(crate) origins: Vec<(usize, usize)>,
}

/// Reads env files, left to right; a missing file is skipped, an unreadable one is an error. A
/// bare `KEY` line takes KEY from `os` (and sets nothing when it is not set there). Linear in
/// the number of lines.
pub(crate) fn read_env_files(root: &Path, names: &[String], os: &OsEnv) -> Result<EnvFiles, Error> {
    let mut out = EnvFiles::default();
    let mut parsed: Vec<(usize, Vec<envfile::Entry>)> = Vec::new();
    for name in names {
        let path = join(root, name);
        let Some(bytes) = read::read(&path, "env file")? else {
            out.files.push((path, false));
            continue;
        };
        let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8 { path: path.clone() })?;
        let entries = envfile::parse(&text).map_err(|e| Error::EnvSyntax {
            path: path.clone(),
            line: e.line,
            column: e.column,
            message: e.kind.to_string(),
        })?;
        parsed.push((out.files.len(), entries));
        out.files.push((path, true));
    }
    // Where each key ends up in `vars`, keyed by the parsed entries' own strings.
    let mut index: HashMap<&str, usize, FastHash> = HashMap::default();
    for (file, entries) in &parsed {
        for e in entries {
            let Some(value) = e.value.clone().or_else(|| os.get(&e.key)) else {
                continue;
            };
            match index.get(e.key.as_str()) {
                Some(&i) => {
                    out.vars[i].1 = value;
                    out.origins[i] = (*file, e.line);
                }
                None => {
                    index.insert(&e.key, out.vars.len());
                    out.vars.push((e.key.clone(), value));
                    out.origins.push((*file, e.line));
                }
            }
        }
    }
    Ok(out)
}

/// Resolves the Procfile and env files with honcho's precedence plus the
/// `environments/$ENV_NAME/` convention, and reads the env files.
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
    let files = read_env_files(&root, &env_names, os)?;
    let from_files = files
        .vars
        .iter()
        .find(|(k, _)| k == "PROCFILE")
        .map(|(_, v)| v.clone());
    let (procfile, chosen_by) = match (&common.procfile, from_files, os.get("PROCFILE"), env_name) {
        (Some(p), ..) => (join(&root, p), None),
        (None, Some(p), ..) => (join(&root, &p), None),
        (None, None, Some(p), _) => (join(&root, &p), None),
        (None, None, None, Some(name)) => (
            join(&root, &format!("environments/{name}/Procfile")),
            Some(name),
        ),
        (None, None, None, None) => (join(&root, "Procfile"), None),
    };
    Ok(Sources {
        procfile,
        env_name: chosen_by,
        env_files: files.files,
        env: files.vars,
        origins: files.origins,
    })
}

/// Resolves the sources and parses the Procfile, warning (file:line) about ignored lines.
pub(crate) fn load(common: &Inputs, os: &OsEnv) -> Result<(Sources, procfile::Procfile), Error> {
    let sources = sources(common, os)?;
    let pf = load_procfile(&sources)?;
    for (line, message) in &pf.warnings {
        crate::warn(&format!(
            "warning: {}:{line}: {message}",
            sources.procfile.display()
        ));
    }
    Ok((sources, pf))
}

/// Reads and parses the Procfile; warnings go to the caller.
fn load_procfile(sources: &Sources) -> Result<procfile::Procfile, Error> {
    let path = &sources.procfile;
    let Some(bytes) = read::read(path, "Procfile")? else {
        let env_name = sources.env_name.clone().map(|name| {
            let dir = path.parent().is_some_and(Path::is_dir);
            (name, dir)
        });
        return Err(Error::ProcfileMissing {
            path: path.to_path_buf(),
            env_name,
        });
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
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
        procfile::ProcfileError::Nul { name, line } => Error::ProcfileNul {
            path: path.to_path_buf(),
            name,
            line,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("procrun-sources-unit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bare_keys_merging_and_origins() {
        let d = tmp("merge");
        std::fs::write(d.join("a"), "A=1\nB=2\nHOME\nUNSET_HERE\n").unwrap();
        std::fs::write(d.join("b"), "\nB=3\nA\n").unwrap();
        let os = OsEnv::from_pairs(&[("HOME", "/home/x"), ("A", "os")]);
        let names = ["a".to_string(), "missing".into(), "b".into()];
        let got = read_env_files(&d, &names, &os).unwrap();
        let vars: Vec<(&str, &str)> = got
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(vars, [("A", "os"), ("B", "3"), ("HOME", "/home/x")]);
        assert_eq!(got.origins, [(2, 3), (2, 2), (0, 3)]);
        let found: Vec<bool> = got.files.iter().map(|f| f.1).collect();
        assert_eq!(found, [true, false, true]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn env_name_missing_procfile_says_who_chose_it() {
        let d = tmp("envname");
        let os = OsEnv::from_pairs(&[("ENV_NAME", "prod")]);
        let inputs = Inputs {
            app_root: Some(d.display().to_string()),
            ..Inputs::default()
        };
        let e = load(&inputs, &os).unwrap_err().to_string();
        assert!(
            e.ends_with("environments/prod/Procfile (chosen by ENV_NAME=prod; there is no directory environments/prod)"),
            "{e}"
        );
        std::fs::create_dir_all(d.join("environments/prod")).unwrap();
        let e = load(&inputs, &os).unwrap_err().to_string();
        assert!(e.ends_with("(chosen by ENV_NAME=prod)"), "{e}");
        // Named explicitly: nothing about ENV_NAME.
        let inputs = Inputs {
            procfile: Some(d.join("P").display().to_string()),
            ..inputs
        };
        let e = load(&inputs, &os).unwrap_err().to_string();
        assert!(!e.contains("ENV_NAME"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
