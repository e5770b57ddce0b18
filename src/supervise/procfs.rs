//! What procrun reads from `/proc`: a process's state, parent, group and start time
//! (`/proc/PID/stat`), and the last pid handed out (`/proc/loadavg`).

/// The fields of `/proc/PID/stat` procrun uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie), ...
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
    /// When the process was forked, in clock ticks after boot (see [`boot_ticks`]).
    pub(crate) start: u64,
}

impl Stat {
    /// Neither a zombie nor dead.
    pub(crate) fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`. The command name is in parentheses and may contain
/// anything (spaces, parentheses), so the fields are read after its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    // `starttime` is field 22; the fields read so far were 3 to 5.
    let start = fields.nth(22 - 6)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgid,
        start,
    })
}

/// The stat of `pid`, if it still exists.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc` with its stat.
pub(crate) fn all() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Now, on the clock of [`Stat::start`]: `CLOCK_BOOTTIME` in clock ticks, rounded down as the
/// kernel rounds a start time. A process forked after this call has a start at or above it.
pub(crate) fn boot_ticks() -> Option<u64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ns =
        u64::try_from(now.tv_sec()).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec()).ok()?;
    Some(ns / (1_000_000_000 / u64::try_from(hz).ok().filter(|&h| h > 0)?))
}

/// A point in the order of forks: the clock tick and the last pid the kernel handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForkMark {
    tick: u64,
    /// `None`: `/proc/loadavg` could not be read.
    last_pid: Option<i32>,
}

impl ForkMark {
    /// Now. Taken before a signal is sent, every process forked after the signal is
    /// [`forked_after`](Self::forked_after) the mark.
    pub(crate) fn now() -> Option<ForkMark> {
        let last_pid = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| parse_loadavg(&text));
        Some(ForkMark {
            tick: boot_ticks()?,
            last_pid,
        })
    }

    /// Whether process `pid` (with `stat`) may have been forked after the mark: a later tick,
    /// or the same tick and a pid handed out after the mark. A tick is 10 ms, and pids are
    /// handed out in increasing order until they wrap around (a process forked in the same
    /// tick as the mark, just as pids wrapped, counts as forked before it).
    pub(crate) fn forked_after(&self, pid: i32, stat: &Stat) -> bool {
        match stat.start.cmp(&self.tick) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.last_pid.is_none_or(|last| pid > last),
        }
    }
}

/// The last pid handed out in procrun's PID namespace: the fifth field of `/proc/loadavg`
/// (`0.00 0.01 0.05 1/123 4567`).
fn parse_loadavg(text: &str) -> Option<i32> {
    text.split_whitespace().nth(4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        // Fields 6 to 21, then the start time (22) and what follows it.
        const MID: &str = "42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0";
        type Case = (String, Option<(char, i32, i32, u64)>);
        let cases: &[Case] = &[
            (
                format!("42 (sh) S 1 42 {MID} 5123 2400 1"),
                Some(('S', 1, 42, 5123)),
            ),
            (
                format!("7 (a) b (c)) Z 3 5 {MID} 77 0"),
                Some(('Z', 3, 5, 77)),
            ),
            (format!("9 (x y) T 2 9 {MID} 0"), Some(('T', 2, 9, 0))),
            (format!("9 (x y) T 2 9 {MID}"), None),
            (format!("9 (x) T 2 9 {MID} -1"), None),
            ("garbage".into(), None),
            ("1 (sh) S".into(), None),
        ];
        for (text, want) in cases {
            let got = parse_stat(text).map(|s| (s.state, s.ppid, s.pgid, s.start));
            assert_eq!(got, *want, "{text}");
        }
        let me = stat(std::process::id() as i32).expect("this process's stat");
        assert!(me.is_alive());
        // This process was forked before now, on the same clock.
        assert!(me.start <= boot_ticks().expect("CLOCK_BOOTTIME"));
    }

    #[test]
    fn fork_order() {
        let stat = |start| Stat {
            state: 'S',
            ppid: 1,
            pgid: 1,
            start,
        };
        let mark = ForkMark {
            tick: 500,
            last_pid: Some(4567),
        };
        let unknown = ForkMark {
            last_pid: None,
            ..mark
        };
        type Case = (ForkMark, i32, u64, bool);
        let cases: &[Case] = &[
            (mark, 100, 501, true),   // a later tick, whatever the pid (wrapped)
            (mark, 9000, 499, false), // an earlier tick, whatever the pid
            (mark, 4568, 500, true),  // the same tick, a pid handed out after the mark
            (mark, 4567, 500, false), // the same tick, the last pid before the mark
            (mark, 12, 500, false),   // the same tick, an older pid
            (unknown, 12, 500, true), // the same tick, no pid to compare: after
            (unknown, 12, 499, false),
        ];
        for &(m, pid, start, want) in cases {
            assert_eq!(
                m.forked_after(pid, &stat(start)),
                want,
                "{m:?} {pid} {start}"
            );
        }
        assert_eq!(parse_loadavg("0.00 0.01 0.05 1/123 4567\n"), Some(4567));
        assert_eq!(parse_loadavg("0.00 0.01 0.05 1/123"), None);
        assert!(ForkMark::now().is_some_and(|m| m.last_pid.is_some()));
    }

    #[test]
    fn a_process_forked_later_is_after_the_mark() {
        let mark = ForkMark::now().expect("a fork mark");
        let before = boot_ticks().expect("CLOCK_BOOTTIME");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let stat = stat(child.id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        let stat = stat.expect("the child's stat");
        assert!(stat.start >= before);
        assert!(mark.forked_after(child.id() as i32, &stat));
        // This process was forked long before.
        let me = super::stat(std::process::id() as i32).expect("this process's stat");
        assert!(!mark.forked_after(std::process::id() as i32, &me));
    }
}
