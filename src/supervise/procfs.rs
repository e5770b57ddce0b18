//! What procrun reads from `/proc`: a process's state, parent, group and start time
//! (`/proc/PID/stat`).

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

/// Now, on the clock of [`Stat::start`]: `CLOCK_BOOTTIME` in clock ticks, rounded down as the
/// kernel rounds a start time. A process forked after this call has a start at or above it.
pub(crate) fn boot_ticks() -> Option<u64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ns =
        u64::try_from(now.tv_sec()).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec()).ok()?;
    Some(ns / (1_000_000_000 / u64::try_from(hz).ok().filter(|&h| h > 0)?))
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
    fn a_process_forked_later_starts_at_or_after_the_clock() {
        let before = boot_ticks().expect("CLOCK_BOOTTIME");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let start = stat(child.id() as i32).map(|s| s.start);
        let _ = child.kill();
        let _ = child.wait();
        assert!(start.expect("the child's stat") >= before);
    }
}
