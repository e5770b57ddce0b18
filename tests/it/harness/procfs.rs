//! What the tests read from `/proc`: process state and parentage, signal masks, and the
//! processes that carry a test's tag.

use super::TAG_VAR;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub state: char,
    pub comm: String,
}

pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut f = stat[close + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
        comm,
    })
}

pub fn all_procs() -> Vec<ProcInfo> {
    let mut v = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(i) = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
                .and_then(proc_info)
            {
                v.push(i);
            }
        }
    }
    v
}

/// Every descendant of `root` (host pids), zombies included.
pub fn descendants(root: i32) -> Vec<ProcInfo> {
    let mut by_parent: HashMap<i32, Vec<ProcInfo>> = HashMap::new();
    for p in all_procs() {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(children) = by_parent.get(&p) {
            for c in children {
                stack.push(c.pid);
                out.push(c.clone());
            }
        }
    }
    out
}

/// `pid comm state ppid pgid` of every descendant of `root`, one per line.
pub fn describe(root: i32) -> String {
    descendants(root)
        .iter()
        .map(|p| {
            format!(
                "{} {} {} ppid={} pgid={}",
                p.pid, p.comm, p.state, p.ppid, p.pgid
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn zombies_under(root: i32) -> usize {
    descendants(root).iter().filter(|p| p.state == 'Z').count()
}

/// Live processes (anywhere on the host) whose environment carries `tag`.
pub fn tagged(tag: &str) -> Vec<i32> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut v = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                v.push(pid);
            }
        }
    }
    v
}

/// `SigBlk`/`SigIgn`/... of a `/proc/<pid>/status`-formatted text.
pub fn status_mask(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// A mask field of a live process (0 when it is gone).
pub fn mask_of(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| status_mask(&t, field))
        .unwrap_or(0)
}

pub fn sigbit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Waits until process `pid` ignores `sig` (e.g. its shell has run `trap '' TERM`).
pub fn wait_ignores(pid: i32, sig: i32, timeout: std::time::Duration) -> bool {
    super::wait_until(timeout, || mask_of(pid, "SigIgn") & sigbit(sig) != 0)
}
