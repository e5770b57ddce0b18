//! What procrun reads from `/proc`: a process's state, parent and group (`/proc/PID/stat`).

/// The fields of `/proc/PID/stat` procrun uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie), ...
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
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
    Some(Stat { state, ppid, pgid })
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
        type Case<'a> = (&'a str, Option<(char, i32, i32)>);
        let cases: &[Case] = &[
            ("42 (sh) S 1 42 42 0 -1", Some(('S', 1, 42))),
            ("7 (a) b (c)) Z 3 5 5 0", Some(('Z', 3, 5))),
            ("9 (x y) T 2 9 9", Some(('T', 2, 9))),
            ("garbage", None),
            ("1 (sh) S", None),
        ];
        for (text, want) in cases {
            let got = parse_stat(text).map(|s| (s.state, s.ppid, s.pgid));
            assert_eq!(got, *want, "{text}");
        }
        assert!(stat(std::process::id() as i32).is_some_and(|s| s.is_alive()));
    }
}
