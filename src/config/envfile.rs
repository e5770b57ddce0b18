//! `.env` text → ordered variables. Pure: no I/O, no `$VAR` expansion, never touches the
//! process environment.
//!
//! procrun's own parser rather than dotenvy: dotenvy 0.15 rejects lines honcho accepts
//! (`A=hello world`, `G=O'Brien`) and expands `${VAR}`, which would corrupt passwords with `$`.
//! The grammar (also in README.md) keeps honcho's values for the common forms:
//! - blank lines and `#` comments are skipped; leading whitespace is fine;
//! - `[export ]KEY = VALUE`, KEY is `[A-Za-z_][A-Za-z0-9_]*`;
//! - unquoted values: `\x` is `x`, an unquoted `#` starts a comment, surrounding whitespace is
//!   trimmed but inner spaces are kept (`A=hello world` is `hello world`, honcho drops them);
//! - `'…'` is literal; an apostrophe with no closing one on its line is literal (`O'Brien`);
//! - `"…"` may span lines; `\n`, `\t`, `\r`, `\"`, `\\` are escapes, other backslashes are kept;
//! - quoted and unquoted parts glued together form one value (`"a b"'c d'e` is `a bc de`);
//! - `KEY=` with nothing (or only a comment) leaves KEY unset, as honcho does; `KEY=""` sets it
//!   empty;
//! - anything else is an error naming the line.

/// An error at a given 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Parses `.env` text into `(key, value)` pairs in file order (later ones win when merged).
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, EnvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        p.skip_blank();
        if p.at_end() {
            return Ok(out);
        }
        if p.peek() == Some('#') || p.at_eol() {
            p.skip_to_eol();
            p.eat_eol();
            continue;
        }
        let line = p.line;
        let mut key = p.word();
        if key == "export" && matches!(p.peek(), Some(' ' | '\t')) {
            p.skip_blank();
            key = p.word();
        }
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            let bad: String = p.rest_of_line();
            return Err(p.err(
                line,
                format!(
                    "invalid variable name: expected KEY=VALUE, found `{}`",
                    key + &bad
                ),
            ));
        }
        p.skip_blank();
        if p.peek() != Some('=') {
            return Err(p.err(line, format!("expected `=` after `{key}`")));
        }
        p.pos += 1;
        p.skip_blank();
        if let Some(value) = p.value(line)? {
            out.push((key, value));
        }
        p.eat_eol();
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some('\n' | '\r'))
    }
    fn err(&self, line: usize, message: String) -> EnvError {
        EnvError { line, message }
    }
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }
    fn skip_to_eol(&mut self) {
        while !self.at_eol() {
            self.pos += 1;
        }
    }
    fn rest_of_line(&mut self) -> String {
        let start = self.pos;
        self.skip_to_eol();
        self.chars[start..self.pos].iter().collect()
    }
    /// Consumes one line break (`\n`, `\r\n` or `\r`) if present.
    fn eat_eol(&mut self) {
        match self.peek() {
            Some('\r') => {
                self.pos += 1;
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
                self.line += 1;
            }
            Some('\n') => {
                self.pos += 1;
                self.line += 1;
            }
            _ => {}
        }
    }
    fn word(&mut self) -> String {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
    /// Finds a closing `'` on the current line, returning its index.
    fn closing_single_quote(&self) -> Option<usize> {
        self.chars[self.pos + 1..]
            .iter()
            .take_while(|c| !matches!(c, '\n' | '\r'))
            .position(|&c| c == '\'')
            .map(|i| self.pos + 1 + i)
    }

    /// Parses a value up to the end of its (last) line. `None`: nothing after `=`.
    fn value(&mut self, start_line: usize) -> Result<Option<String>, EnvError> {
        let mut value = String::new();
        let mut pending_ws = String::new();
        let mut any = false;
        while !self.at_eol() {
            let c = self.peek().unwrap_or_default();
            match c {
                ' ' | '\t' => {
                    pending_ws.push(c);
                    self.pos += 1;
                    continue;
                }
                '#' => break,
                _ => {}
            }
            value.push_str(&pending_ws);
            pending_ws.clear();
            any = true;
            match c {
                '\'' => match self.closing_single_quote() {
                    Some(end) => {
                        value.extend(&self.chars[self.pos + 1..end]);
                        self.pos = end + 1;
                    }
                    None => {
                        value.push('\'');
                        self.pos += 1;
                    }
                },
                '"' => self.double_quoted(start_line, &mut value)?,
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(n) if !matches!(n, '\n' | '\r') => {
                            value.push(n);
                            self.pos += 1;
                        }
                        _ => value.push('\\'),
                    }
                }
                _ => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
        self.skip_to_eol();
        Ok(any.then_some(value))
    }

    fn double_quoted(&mut self, start_line: usize, value: &mut String) -> Result<(), EnvError> {
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(
                    start_line,
                    "unterminated double-quoted value (no closing `\"`)".to_string(),
                ));
            };
            self.pos += 1;
            match c {
                '"' => return Ok(()),
                '\\' => {
                    let escaped = match self.peek() {
                        Some('n') => Some('\n'),
                        Some('t') => Some('\t'),
                        Some('r') => Some('\r'),
                        Some('"') => Some('"'),
                        Some('\\') => Some('\\'),
                        _ => None,
                    };
                    match escaped {
                        Some(e) => {
                            value.push(e);
                            self.pos += 1;
                        }
                        None => value.push('\\'),
                    }
                }
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.pos += 1;
                    }
                    self.line += 1;
                    value.push('\n');
                }
                '\n' => {
                    self.line += 1;
                    value.push('\n');
                }
                _ => value.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Option<String> {
        let vars = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e:?}"));
        assert!(vars.len() <= 1, "{line:?} gave {vars:?}");
        vars.into_iter().next().map(|(_, v)| v)
    }

    #[test]
    fn values_table() {
        // (line, value; None = not set). Honcho's value is noted where procrun differs.
        let cases: &[(&str, Option<&str>)] = &[
            ("PLAIN=value", Some("value")),
            (
                "SPACED = spaced around equals",
                Some("spaced around equals"),
            ), // honcho: spacedaroundequals
            ("UNQUOTED_WORDS=hello big world", Some("hello big world")), // honcho: hellobigworld
            ("DOUBLE=\"hello big world\"", Some("hello big world")),
            ("SINGLE='hello big world'", Some("hello big world")),
            ("MIXED=\"a b\"'c d'e", Some("a bc de")),
            ("INLINE_COMMENT=value # comment", Some("value")),
            ("HASH_NO_SPACE=abc#def", Some("abc")),
            ("HASH_QUOTED=\"abc # def\"", Some("abc # def")),
            ("EMPTY=", None),
            ("EMPTY=   # only a comment", None),
            ("EMPTY=#x", None),
            ("EMPTY_DQ=\"\"", Some("")),
            ("EMPTY_SQ=''", Some("")),
            ("export EXPORTED=1", Some("1")), // honcho: ignored
            ("export=1", Some("1")),
            ("lower_case=ok", Some("ok")),
            (
                "URL=postgres://user:pw@host:5432/db?sslmode=require&x=1",
                Some("postgres://user:pw@host:5432/db?sslmode=require&x=1"),
            ),
            ("EQUALS=a=b=c", Some("a=b=c")),
            ("LEADING_EQ==x", Some("=x")),
            ("   INDENTED=yes", Some("yes")),
            ("TABBED\t=\ttab", Some("tab")),
            ("DOLLAR=$HOME/x", Some("$HOME/x")),
            ("BRACES=${PLAIN}", Some("${PLAIN}")),
            ("TWO=1 THREE=3", Some("1 THREE=3")), // honcho: 1THREE=3
            ("NAME=O'Brien", Some("O'Brien")),    // honcho: crash
            ("PW=pa$$w0rd!", Some("pa$$w0rd!")),
            // escapes
            ("DQ_NEWLINE=\"line1\\nline2\"", Some("line1\nline2")),
            ("SQ_NEWLINE='line1\\nline2'", Some("line1\\nline2")), // honcho: newline
            ("UNQ_NEWLINE=line1\\nline2", Some("line1nline2")),
            ("DQ_TAB=\"a\\tb\"", Some("a\tb")),
            ("DQ_DOUBLE_BACKSLASH_N=\"a\\\\nb\"", Some("a\\nb")), // honcho: newline
            ("DQ_ESCAPED_QUOTE=\"say \\\"hi\\\"\"", Some("say \"hi\"")),
            ("UNQ_ESCAPED_SPACE=a\\ b", Some("a b")),
            ("UNQ_WINDOWS_PATH=C:\\temp\\new", Some("C:tempnew")),
            ("DQ_WINDOWS_PATH=\"C:\\temp\\new\"", Some("C:\temp\new")),
            ("SQ_WINDOWS_PATH='C:\\temp\\new'", Some("C:\\temp\\new")), // honcho: tab/newline
            ("DQ_DOLLAR=\"\\$HOME\"", Some("\\$HOME")),
            (
                "UNICODE=\"h\u{e9}llo w\u{f6}rld \u{2603}\"",
                Some("h\u{e9}llo w\u{f6}rld \u{2603}"),
            ),
            ("TRAIL=x\\", Some("x\\")),
            ("CR=x\r", Some("x")),
            (
                "CERT=\"-----BEGIN-----\nabc\n-----END-----\"",
                Some("-----BEGIN-----\nabc\n-----END-----"),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(one(line).as_deref(), *want, "line {line:?}");
        }
    }

    #[test]
    fn errors_table() {
        // (text, line of the error, start of the message)
        let cases: &[(&str, usize, &str)] = &[
            ("A=1\nDASH-KEY=no\n", 2, "expected `=` after `DASH`"),
            ("1DIGIT=no", 1, "invalid variable name"),
            (
                "# c\n\nNOT_AN_ASSIGNMENT\n",
                3,
                "expected `=` after `NOT_AN_ASSIGNMENT`",
            ),
            ("a.b=1", 1, "expected `=` after `a`"),
            ("=1", 1, "invalid variable name"),
            (
                "A=1\nCERT=\"-----BEGIN\nabc\n",
                2,
                "unterminated double-quoted",
            ),
            ("\u{1e40}Y=1", 1, "invalid variable name"),
        ];
        for (text, line, start) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, *line, "{text:?}: {err:?}");
            assert!(err.message.starts_with(start), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn order_duplicates_and_line_counting() {
        let vars = parse("\u{feff}A=1\r\nB=\"x\ny\"\nA=2\n\nC=3").unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x\ny".into()),
                ("A".into(), "2".into()),
                ("C".into(), "3".into())
            ]
        );
        let err = parse("A=\"x\ny\"\nB C\n").unwrap_err();
        assert_eq!(err.line, 3);
    }
}
