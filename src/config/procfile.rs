//! Procfile text → process specs. Pure: no I/O.
//!
//! Grammar (honcho's, plus procrun's deliberate differences listed in README.md):
//! - a UTF-8 BOM at the start is stripped;
//! - lines end at `\n`, `\r\n` or a lone `\r`;
//! - a line ending in `\` is joined with the next one (the backslash and line break are removed,
//!   exactly as `sh` would remove them);
//! - a line `^([A-Za-z0-9_-]+):\s*(.+)$` defines a process; whitespace after the colon is skipped,
//!   and a command made only of blanks is the last blank (honcho's regex backtracks that way);
//! - blank lines and `#` comments are ignored; any other line is ignored with a warning;
//! - a name defined twice is an error naming both lines;
//! - a NUL byte in a command is an error naming the line (no process could be given it).

/// One `name: command` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessSpec {
    /// The process type name (`web`).
    pub(crate) name: String,
    /// The command given to `/bin/sh -c`.
    pub(crate) command: String,
    /// 1-based line number where the entry starts.
    pub(crate) line: usize,
}

/// A successfully parsed Procfile, with warnings for ignored lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Procfile {
    pub(crate) processes: Vec<ProcessSpec>,
    /// `(line, message)` for lines that match no rule.
    pub(crate) warnings: Vec<(usize, String)>,
}

/// Why a Procfile was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProcfileError {
    /// The same name on two lines.
    Duplicate {
        name: String,
        first: usize,
        second: usize,
    },
    /// A NUL byte in the command of `name`, defined on `line`.
    Nul { name: String, line: usize },
}

/// Splits text into `(line_number, line)` at `\n`, `\r\n` and lone `\r`.
pub(crate) fn split_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i, mut n) = (0, 0, 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push((n, &text[start..i]));
                n += 1;
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push((n, &text[start..i]));
                n += 1;
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        out.push((n, &text[start..]));
    }
    out
}

/// Parses one logical line; `None` when it defines no process.
fn parse_entry(line: &str) -> Option<(&str, &str)> {
    let name_len = line
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        .count();
    if name_len == 0 || line.as_bytes().get(name_len) != Some(&b':') {
        return None;
    }
    let rest = &line[name_len + 1..];
    let command = rest.trim_start();
    if !command.is_empty() {
        return Some((&line[..name_len], command));
    }
    // `web: ` — honcho's `\s*(.+)` leaves the last blank character as the command.
    let last = rest.char_indices().next_back()?;
    Some((&line[..name_len], &rest[last.0..]))
}

/// Parses Procfile text.
pub(crate) fn parse(text: &str) -> Result<Procfile, ProcfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut result = Procfile::default();
    let mut logical: Option<(usize, String)> = None;
    let lines = split_lines(text);
    let last_index = lines.len().saturating_sub(1);
    for (index, (number, raw)) in lines.into_iter().enumerate() {
        let (start, mut line) = match logical.take() {
            Some((start, mut acc)) => {
                acc.push_str(raw);
                (start, acc)
            }
            None => (number, raw.to_string()),
        };
        if line.ends_with('\\') {
            line.pop();
            if index < last_index {
                logical = Some((start, line));
                continue;
            }
            result
                .warnings
                .push((start, "line continuation `\\` at end of file".to_string()));
        }
        classify(&mut result, start, &line)?;
    }
    Ok(result)
}

fn classify(result: &mut Procfile, number: usize, line: &str) -> Result<(), ProcfileError> {
    if let Some((name, command)) = parse_entry(line) {
        if command.contains('\0') {
            return Err(ProcfileError::Nul {
                name: name.to_string(),
                line: number,
            });
        }
        if let Some(first) = result.processes.iter().find(|p| p.name == name) {
            return Err(ProcfileError::Duplicate {
                name: name.to_string(),
                first: first.line,
                second: number,
            });
        }
        result.processes.push(ProcessSpec {
            name: name.to_string(),
            command: command.to_string(),
            line: number,
        });
    } else {
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            result.warnings.push((
                number,
                "ignored: not a `name: command` line (names use A-Z a-z 0-9 _ - and start the line)"
                    .to_string(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .processes
            .into_iter()
            .map(|p| (p.name, p.command))
            .collect()
    }

    #[test]
    fn entries_table() {
        // (input, expected (name, command) pairs)
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("web: python app.py\n", &[("web", "python app.py")]),
            ("worker:python w.py", &[("worker", "python w.py")]),
            ("clock:\t  tab", &[("clock", "tab")]),
            ("  indented: x\n", &[]),
            ("spaced : x\n", &[]),
            ("web.1: x\n", &[]),
            ("w\u{e9}b: x\n", &[]),
            ("+plus: x\n", &[]),
            ("empty:\n", &[]),
            ("blank: \n", &[("blank", " ")]),
            ("blank:  \t\n", &[("blank", "\t")]),
            ("#commented: x\n", &[]),
            ("-dash_under-9: allowed", &[("-dash_under-9", "allowed")]),
            ("_: a\n123: b\n", &[("_", "a"), ("123", "b")]),
            ("UPPER: a\nupper: b\n", &[("UPPER", "a"), ("upper", "b")]),
            (
                "url: curl http://x:8080/ # c",
                &[("url", "curl http://x:8080/ # c")],
            ),
            ("web: trailing  ", &[("web", "trailing  ")]),
            // CRLF, lone CR, BOM
            ("a: one\r\nb: two\r\n", &[("a", "one"), ("b", "two")]),
            ("a: one\rb: two\r", &[("a", "one"), ("b", "two")]),
            ("\u{feff}web: bom\n", &[("web", "bom")]),
            // continuation
            (
                "web: gunicorn \\\n    --workers 2 \\\n    app\nw: x\n",
                &[("web", "gunicorn     --workers 2     app"), ("w", "x")],
            ),
            ("web: echo one \\\n  two\n", &[("web", "echo one   two")]),
            ("web: a \\\r\n b\r\n", &[("web", "a  b")]),
            ("web: end \\", &[("web", "end ")]),
            ("", &[]),
            ("\n\n# only comments\n", &[]),
        ];
        for (input, expected) in cases {
            let got = names(input);
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn warnings_name_lines() {
        let p = parse("web: a\n  indented: b\n# c\n\nweb.1: x\nok: y\n").unwrap();
        let lines: Vec<usize> = p.warnings.iter().map(|w| w.0).collect();
        assert_eq!(lines, vec![2, 5]);
        assert_eq!(p.processes[1].line, 6);
    }

    #[test]
    fn continuation_line_numbers() {
        let p = parse("a: x \\\n y\nb: z\n").unwrap();
        assert_eq!(p.processes[0].line, 1);
        assert_eq!(p.processes[1].line, 3);
    }

    #[test]
    fn duplicates_are_fatal_with_both_lines() {
        assert_eq!(
            parse("web: one\nworker: two\nweb: three\n"),
            Err(ProcfileError::Duplicate {
                name: "web".into(),
                first: 1,
                second: 3
            })
        );
    }

    #[test]
    fn nul_in_a_command_is_an_error_naming_the_line() {
        assert_eq!(
            parse("web: a\n# \0 in a comment\nworker: b\0c\n"),
            Err(ProcfileError::Nul {
                name: "worker".into(),
                line: 3
            })
        );
    }

    #[test]
    fn split_lines_table() {
        let cases: &[(&str, &[&str])] = &[
            ("a\nb", &["a", "b"]),
            ("a\r\nb\r\n", &["a", "b"]),
            ("a\rb", &["a", "b"]),
            ("a\n\nb\n", &["a", "", "b"]),
            ("", &[]),
        ];
        for (input, want) in cases {
            let got: Vec<&str> = split_lines(input).into_iter().map(|l| l.1).collect();
            assert_eq!(&got, want, "input {input:?}");
        }
    }
}
