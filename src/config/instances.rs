//! The Procfile expanded into numbered instances with names and ports, and the variables each
//! child gets on top of procrun's environment (honcho's rules). Linear in the number of
//! variables per instance.

use super::{Expand, OsEnv, procfile};
use crate::error::Error;
use std::collections::HashMap;

/// Most instances of one process type (`-c`).
pub(crate) const MAX_CONCURRENCY: u32 = 10_000;

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

/// Parses `-c name=N,...`. Negative counts mean 0 (honcho); more than `MAX_CONCURRENCY` is
/// refused.
pub(crate) fn parse_concurrency(text: &str) -> Result<HashMap<String, u32>, Error> {
    let mut map = HashMap::new();
    for item in text.split(',') {
        let bad = |reason: Option<String>| Error::InvalidConcurrency {
            value: text.to_string(),
            reason,
        };
        let (name, n) = item.split_once('=').ok_or_else(|| bad(None))?;
        let n: i64 = n.trim().parse().map_err(|_| bad(None))?;
        if n > i64::from(MAX_CONCURRENCY) {
            return Err(bad(Some(format!(
                "at most {MAX_CONCURRENCY} instances per process type"
            ))));
        }
        map.insert(name.to_string(), n.max(0) as u32);
    }
    Ok(map)
}

/// Where the base port came from.
enum PortSource<'a> {
    /// An env file: its value is not shown in messages.
    EnvFile,
    /// `-p` (or its variable), or `PORT` in procrun's environment: named by this label.
    Named(&'a str),
}

fn parse_port(value: &str, source: &PortSource) -> Result<u32, Error> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| match source {
            PortSource::EnvFile => Error::InvalidPort {
                value: None,
                source: "PORT in the env file".into(),
            },
            PortSource::Named(label) => Error::InvalidPort {
                value: Some(value.to_string()),
                source: label.to_string(),
            },
        })
}

/// Expands the Procfile into instances with names and ports, as honcho does; a port above
/// 65535 is refused.
///
/// `names` are the types to run, in that order (empty: all, in Procfile order).
pub(crate) fn instances(
    pf: &procfile::Procfile,
    args: &Expand,
    names: &[String],
    env: &[(String, String)],
    os: &OsEnv,
) -> Result<Vec<Instance>, Error> {
    let port_label = if args.port_source.is_empty() {
        "--port"
    } else {
        args.port_source.as_str()
    };
    let (base, source) = if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == "PORT") {
        (parse_port(v, &PortSource::EnvFile)?, PortSource::EnvFile)
    } else if let Some(p) = &args.port {
        let source = PortSource::Named(port_label);
        (parse_port(p, &source)?, source)
    } else if let Some(p) = os.get("PORT") {
        let source = PortSource::Named("PORT in the environment");
        (parse_port(&p, &source)?, source)
    } else {
        (5000, PortSource::Named("the default"))
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
            let name = format!("{}.{}", spec.name, i);
            let port = u64::from(base) + 100 * k as u64 + u64::from(i - 1);
            if port > 65535 {
                return Err(Error::PortOutOfRange {
                    instance: name,
                    port,
                    base: match source {
                        PortSource::EnvFile => None,
                        PortSource::Named(_) => Some(base),
                    },
                    source: match source {
                        PortSource::EnvFile => "PORT in the env file".into(),
                        PortSource::Named(label) => label.to_string(),
                    },
                });
            }
            out.push(Instance {
                name,
                type_name: spec.name.clone(),
                command: spec.command.clone(),
                port: port as u32,
            });
        }
    }
    Ok(out)
}

/// The variables honcho gives an instance on top of the OS environment, in order of
/// precedence: `HONCHO_PROCESS_NAME`, then the env files, then `PORT` (also what `export`
/// writes). An env-file `HONCHO_PROCESS_NAME` or `PORT` keeps its place. `env` has unique
/// keys (as `Sources::env`), so this is one pass without lookups.
pub(crate) fn honcho_env(env: &[(String, String)], inst: &Instance) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len() + 3);
    out.push(("HONCHO_PROCESS_NAME".into(), inst.name.clone()));
    let mut port = false;
    for (k, v) in env {
        match k.as_str() {
            "HONCHO_PROCESS_NAME" => out[0].1 = v.clone(),
            "PORT" => {
                out.push((k.clone(), inst.port.to_string()));
                port = true;
            }
            _ => out.push((k.clone(), v.clone())),
        }
    }
    if !port {
        out.push(("PORT".into(), inst.port.to_string()));
    }
    out
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
        out.push(("PYTHONUNBUFFERED".into(), "1".into()));
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
            port_source: String::new(),
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
        assert_eq!(parse_concurrency("web=10000").unwrap()["web"], 10_000);
        assert_eq!(
            parse_concurrency("web=99999").unwrap_err().to_string(),
            "invalid value for concurrency: 'web=99999' (at most 10000 instances per process type)"
        );
        assert_eq!(parse_concurrency(" worker=3").unwrap()[" worker"], 3);
        let e = instances(
            &pf("web: a\n"),
            &expand(Some("abc"), None),
            &[],
            &[],
            &none(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for port: 'abc' (from --port; a port is 1-65535)"
        );
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
    fn ports_must_be_1_to_65535() {
        let two = pf("a: x\nb: y\n");
        // (-p, PORT in the env file, PORT in the environment, -c, error)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (Some("65435"), None, None, None, None),
            (
                Some("65436"),
                None,
                None,
                None,
                Some(
                    "port 65536 of b.1 is above 65535 (base port 65436 from --port, +100 per process type, +1 per instance)",
                ),
            ),
            (Some("65500"), None, None, None, Some("port 65600 of b.1")),
            (
                Some("65435"),
                None,
                None,
                Some("b=2"),
                Some("port 65536 of b.2"),
            ),
            (
                None,
                Some("65500"),
                None,
                None,
                Some("port 65600 of b.1 is above 65535 (base port from PORT in the env file, "),
            ),
            (
                None,
                None,
                Some("65500"),
                None,
                Some("(base port 65500 from PORT in the environment, "),
            ),
            (
                Some("-5"),
                None,
                None,
                None,
                Some("invalid value for port: '-5' (from --port; a port is 1-65535)"),
            ),
            (
                Some("0"),
                None,
                None,
                None,
                Some("invalid value for port: '0'"),
            ),
            (
                Some("65536"),
                None,
                None,
                None,
                Some("invalid value for port: '65536'"),
            ),
            (
                None,
                Some("SECRET"),
                None,
                None,
                Some("invalid value for port: PORT in the env file is not 1-65535"),
            ),
            (
                None,
                None,
                Some("x"),
                None,
                Some("invalid value for port: 'x' (from PORT in the environment; "),
            ),
        ];
        for (p, file, os, c, want) in cases {
            let env: Vec<(String, String)> = file
                .iter()
                .map(|v| ("PORT".to_string(), v.to_string()))
                .collect();
            let os = OsEnv::from_pairs(&os.map(|v| vec![("PORT", v)]).unwrap_or_default());
            let got = instances(&two, &expand(*p, *c), &[], &env, &os);
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    let e = e.to_string();
                    assert!(e.contains(w), "{p:?} {file:?}: {e}");
                    assert!(!e.contains("SECRET"), "{e}");
                }
                (got, want) => panic!("{p:?} {file:?} {c:?}: {got:?}, want {want:?}"),
            }
        }
        // The label of -p says where it came from.
        let mut args = expand(Some("x"), None);
        args.port_source = "PROCRUN_PORT (--port)".into();
        let e = instances(&two, &args, &[], &[], &none())
            .unwrap_err()
            .to_string();
        assert!(e.contains("(from PROCRUN_PORT (--port);"), "{e}");
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
