//! What `execve` would refuse with E2BIG, checked before anything is started: one argument or
//! `KEY=VALUE` longer than the kernel's per-string limit (`MAX_ARG_STRLEN`, 32 pages: 128 KiB
//! with 4 KiB pages), or a process's arguments and environment together over the limit derived
//! from the stack size (a quarter of `RLIMIT_STACK`, at most 6 MiB, at least 128 KiB; Linux's
//! `bprm_stack_limits`). Messages name the variable, never its value.

use super::{FastHash, Instance, OsEnv, Sources};
use crate::error::Error;
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;

/// The kernel's limits for `execve`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExecLimits {
    /// Longest single argument or `KEY=VALUE`, its terminating NUL included.
    pub(crate) string: usize,
    /// All arguments and variables with their NULs, plus one pointer for each.
    pub(crate) total: usize,
}

/// Linux's `ARG_MAX`: the least the total limit can be.
const ARG_MAX: usize = 128 * 1024;
/// Three quarters of Linux's `_STK_LIM` (8 MiB): the most the total limit can be.
const TOTAL_CAP: usize = 6 * 1024 * 1024;
const POINTER: usize = std::mem::size_of::<usize>();

impl ExecLimits {
    /// The limits of this system, for procrun's stack limit (which its children inherit).
    pub(crate) fn current() -> ExecLimits {
        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
        use nix::unistd::{SysconfVar, sysconf};
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(4096);
        let total = match getrlimit(Resource::RLIMIT_STACK) {
            Ok((soft, _)) if soft != RLIM_INFINITY => usize::try_from(soft / 4)
                .unwrap_or(TOTAL_CAP)
                .min(TOTAL_CAP),
            _ => TOTAL_CAP,
        };
        ExecLimits {
            string: 32 * page,
            total: total.max(ARG_MAX),
        }
    }
}

/// Bytes `KEY=VALUE\0` takes.
fn var_size(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 2
}

/// Checks every env-file variable against the per-string limit (naming its file, line and
/// key).
pub(crate) fn check_env_files(limits: &ExecLimits, sources: &Sources) -> Result<(), Error> {
    for (i, (k, v)) in sources.env.iter().enumerate() {
        let len = var_size(k.as_bytes(), v.as_bytes());
        if len > limits.string {
            return Err(Error::TooLong {
                what: format!("env file {}: `{k}=...`", sources.origin(i)),
                len,
                limit: limits.string,
            });
        }
    }
    Ok(())
}

/// procrun's environment as a child gets it: every variable whose key the overlay does not
/// replace. Returns (bytes, count).
fn inherited<'a>(os: &OsEnv, overlay_keys: impl Iterator<Item = &'a str>) -> (usize, usize) {
    // procrun's environment is small, the overlay may be large: look the overlay up in it.
    let os_keys: HashSet<&[u8], FastHash> = os.vars().iter().map(|(k, _)| k.as_bytes()).collect();
    let replaced: HashSet<&[u8], FastHash> = overlay_keys
        .map(str::as_bytes)
        .filter(|k| os_keys.contains(k))
        .collect();
    os.vars()
        .iter()
        .filter(|(k, _)| !replaced.contains(k.as_bytes()))
        .fold((0, 0), |(size, n), (k, v)| {
            (size + var_size(k.as_bytes(), v.as_bytes()), n + 1)
        })
}

/// Checks each instance's `/bin/sh -c COMMAND` and environment (procrun's, replaced and
/// extended by its overlay) against both limits. `lines` gives each type's Procfile line.
pub(crate) fn check_instances(
    limits: &ExecLimits,
    os: &OsEnv,
    instances: &[Instance],
    overlays: &[Vec<(String, String)>],
    procfile: &str,
    lines: &dyn Fn(&str) -> usize,
) -> Result<(), Error> {
    let Some(first) = overlays.first() else {
        return Ok(());
    };
    // Every overlay has the same keys (the env files', HONCHO_PROCESS_NAME, PORT, perhaps
    // PYTHONUNBUFFERED), so what is inherited is the same for all.
    let (base_size, base_count) = inherited(os, first.iter().map(|(k, _)| k.as_str()));
    for (inst, overlay) in instances.iter().zip(overlays) {
        let command = inst.command.len() + 1;
        if command > limits.string {
            return Err(Error::TooLong {
                what: format!(
                    "the command of `{}` ({procfile}:{})",
                    inst.type_name,
                    lines(&inst.type_name)
                ),
                len: command,
                limit: limits.string,
            });
        }
        let mut size = base_size + "/bin/sh".len() + 1 + "-c".len() + 1 + command;
        // The file name is copied too.
        size += "/bin/sh".len() + 1;
        for (k, v) in overlay {
            let len = var_size(k.as_bytes(), v.as_bytes());
            if len > limits.string {
                return Err(Error::TooLong {
                    what: format!("`{k}=...` of {}", inst.name),
                    len,
                    limit: limits.string,
                });
            }
            size += len;
        }
        size += (3 + base_count + overlay.len()) * POINTER;
        if size > limits.total {
            return Err(Error::TooBig {
                instance: inst.name.clone(),
                size,
                limit: limits.total,
            });
        }
    }
    Ok(())
}

/// Checks `run`'s command and environment (procrun's plus the env files) against the limits.
pub(crate) fn check_run(
    limits: &ExecLimits,
    os: &OsEnv,
    sources: &Sources,
    argv: &[String],
) -> Result<(), Error> {
    check_env_files(limits, sources)?;
    let (base_size, base_count) = inherited(os, sources.env.iter().map(|(k, _)| k.as_str()));
    let mut size = base_size;
    for (k, v) in &sources.env {
        size += var_size(k.as_bytes(), v.as_bytes());
    }
    for a in argv {
        if a.len() + 1 > limits.string {
            return Err(Error::TooLong {
                what: "an argument of the command".into(),
                len: a.len() + 1,
                limit: limits.string,
            });
        }
        size += a.len() + 1;
    }
    size += (argv.len() + base_count + sources.env.len()) * POINTER;
    if size > limits.total {
        return Err(Error::TooBig {
            instance: "the command".into(),
            size,
            limit: limits.total,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_this_system_are_sane() {
        let l = ExecLimits::current();
        assert!(l.string >= 128 * 1024, "{l:?}");
        assert!((ARG_MAX..=TOTAL_CAP).contains(&l.total), "{l:?}");
    }

    fn inst(name: &str, command: &str) -> Instance {
        Instance {
            name: format!("{name}.1"),
            type_name: name.into(),
            command: command.into(),
            port: 5000,
        }
    }

    #[test]
    fn strings_and_totals() {
        let limits = ExecLimits {
            string: 100,
            total: 1000,
        };
        let os = OsEnv::from_pairs(&[("HOME", "/root"), ("BIG", &"x".repeat(400))]);
        let line = |_: &str| 7;
        let ok = vec![("A".to_string(), "1".to_string())];
        // (command, overlay, error)
        let long_value = vec![("SECRET_KEY".to_string(), "v".repeat(98))];
        let fits = vec![("SECRET_KEY".to_string(), "v".repeat(87))];
        type Case<'a> = (String, Vec<(String, String)>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("true".into(), ok.clone(), None),
            (
                "x".repeat(100),
                ok.clone(),
                Some(
                    "the command of `web` (Procfile:7) is 101 bytes, over the kernel's limit of 100",
                ),
            ),
            ("x".repeat(99), ok.clone(), None),
            (
                "true".into(),
                long_value,
                Some("`SECRET_KEY=...` of web.1 is 110 bytes"),
            ),
            ("true".into(), fits, None),
            // The inherited BIG counts unless the overlay replaces it.
            (
                "true".into(),
                (0..6).map(|i| (format!("K{i}"), "v".repeat(90))).collect(),
                Some("web.1 take"),
            ),
            (
                "true".into(),
                (0..6)
                    .map(|i| {
                        (
                            if i == 0 {
                                "BIG".to_string()
                            } else {
                                format!("K{i}")
                            },
                            "v".repeat(90),
                        )
                    })
                    .collect(),
                None,
            ),
        ];
        for (command, overlay, want) in cases {
            let got = check_instances(
                &limits,
                &os,
                &[inst("web", &command)],
                &[overlay],
                "Procfile",
                &line,
            );
            match (got, want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => {
                    let e = e.to_string();
                    assert!(e.contains(w), "{e}");
                    assert!(!e.contains("vvv"), "{e}");
                }
                (got, want) => panic!("{command:.10}: {got:?}, want {want:?}"),
            }
        }
    }
}
