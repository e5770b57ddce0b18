//! The Procfile expanded into numbered instances with names and ports, and the variables each
//! child gets on top of procrun's environment (honcho's rules).

use super::{Expand, OsEnv, procfile};
use crate::error::Error;
use std::collections::HashMap;

/// One process to run: an instance of a Procfile type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// `type.N`
    pub(crate) name: String,
    /// The Procfile type name.
    pub(crate) type_name: String,
    pub(crate) command: String,
    pub(crate) port: u32,
}

/// Parses `-c name=N,...`. Negative counts mean 0.
pub(crate) fn parse_concurrency(text: &str) -> Result<HashMap<String, u32>, Error> {
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
pub(crate) fn instances(
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
    } else if let Some(p) = os.get("PORT") {
        parse_port(&p, "PORT in the environment")?
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
pub(crate) fn honcho_env(env: &[(String, String)], inst: &Instance) -> Vec<(String, String)> {
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
pub(crate) fn child_env(
    os: &OsEnv,
    env: &[(String, String)],
    inst: &Instance,
) -> Vec<(String, String)> {
    let mut out = honcho_env(env, inst);
    if os.get("PYTHONUNBUFFERED").is_none() && !env.iter().any(|(k, _)| k == "PYTHONUNBUFFERED") {
        set_var(&mut out, "PYTHONUNBUFFERED", "1");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(text: &str) -> procfile::Procfile {
        procfile::parse(text).unwrap()
    }

    fn expand(port: Option<&str>, concurrency: Option<&str>) -> Expand {
        Expand {
            port: port.map(str::to_string),
            concurrency: concurrency.map(str::to_string),
        }
    }

    fn none() -> OsEnv {
        OsEnv::default()
    }

    #[test]
    fn ports_and_names() {
        let args = expand(Some("6000"), Some("web=2,worker=3"));
        let got = instances(
            &pf("web: a\nworker: b\nclock: c\n"),
            &args,
            &[],
            &[],
            &none(),
        )
        .unwrap();
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
        let names = ["clock".to_string(), "web".into(), "clock".into()];
        let os = OsEnv::from_pairs(&[("PORT", "7000")]);
        let got = instances(
            &pf("web: a\nclock: c\n"),
            &expand(None, Some("clock=0")),
            &names,
            &[],
            &os,
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].port), ("web.1", 7100));
        // env file PORT beats -p beats OS PORT
        let args = expand(Some("6000"), None);
        let env = vec![("PORT".to_string(), "8000".to_string())];
        assert_eq!(
            instances(&pf("web: a\n"), &args, &[], &env, &os).unwrap()[0].port,
            8000
        );
        assert_eq!(
            instances(&pf("web: a\n"), &args, &[], &[], &os).unwrap()[0].port,
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
        let e = instances(
            &pf("web: a\n"),
            &expand(Some("abc"), None),
            &[],
            &[],
            &none(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid value for port: 'abc' (from --port)");
        let e = instances(
            &pf("web: a\n"),
            &Expand::default(),
            &["nope".into()],
            &[],
            &none(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Process type 'nope' does not exist in Procfile"
        );
    }

    #[test]
    fn child_environment() {
        let os = OsEnv::from_pairs(&[("A", "os"), ("HONCHO_PROCESS_NAME", "x")]);
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
        let os = OsEnv::from_pairs(&[("PYTHONUNBUFFERED", "")]);
        let got: HashMap<String, String> = child_env(&os, &[], &inst).into_iter().collect();
        assert!(!got.contains_key("PYTHONUNBUFFERED"));
    }
}
