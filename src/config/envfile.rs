//! `.env` text → ordered entries. Pure: no I/O, no `$VAR` expansion, never touches the
//! process environment. Linear in the size of the text.
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
//! - a bare `KEY` (no `=`; a comment may follow) takes KEY from procrun's environment, as
//!   Compose does (the caller resolves it: `Entry::value` is `None`);
//! - a NUL byte in a value is an error (no process could be given it);
//! - anything else is an error naming the line and column, and the key once there is one.
//!
//! Errors never quote the text: a broken line is often a secret (a value that lost its quotes,
//! a PEM key's body), and messages end up in container logs.

use std::fmt;

/// One variable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    /// `None`: a bare `KEY` line, whose value comes from procrun's environment.
    pub(crate) value: Option<String>,
    /// 1-based line of the key.
    pub(crate) line: usize,
}

/// Why a line was rejected. Carries no part of the text but a key or a punctuation character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The line starts with `=`.
    MissingKey,
    /// A key starts with a digit.
    DigitFirst,
    /// A character that cannot be in a key, where the key is; the character is named when it is
    /// ASCII punctuation (`-`, `.`), which says what is wrong without quoting the text.
    KeyChar(Option<char>),
    /// A key, blanks, then something other than `=`, a comment or the end of the line.
    ExpectedEquals,
    /// A `"` with no closing one.
    Unterminated { key: String },
    /// A NUL byte in a value.
    Nul { key: String },
}

/// An error at a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) kind: ErrorKind,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEYS: &str = "a key is letters, digits and `_`, not starting with a digit";
        match self {
            ErrorKind::MissingKey => write!(f, "expected a key before `=`"),
            ErrorKind::DigitFirst => write!(f, "a key cannot start with a digit ({KEYS})"),
            ErrorKind::KeyChar(Some(c)) => write!(f, "`{c}` is not allowed in a key ({KEYS})"),
            ErrorKind::KeyChar(None) => write!(f, "invalid character in a key ({KEYS})"),
            ErrorKind::ExpectedEquals => {
                write!(f, "expected `=` after the key (KEY=VALUE, or a bare KEY)")
            }
            ErrorKind::Unterminated { key } => write!(
                f,
                "unterminated double-quoted value of `{key}` (no closing `\"`)"
            ),
            ErrorKind::Nul { key } => write!(f, "NUL byte in the value of `{key}`"),
        }
    }
}

/// Parses `.env` text into entries in file order (later ones win when merged).
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, EnvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        line_start: 0,
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
            let save = p.pos;
            p.skip_blank();
            if p.peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                key = p.word();
            } else {
                p.pos = save;
            }
        }
        let key_column = p.column() - key.chars().count();
        if key.is_empty() {
            return Err(p.err(match p.peek() {
                Some('=') => ErrorKind::MissingKey,
                c => key_char(c),
            }));
        }
        if key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(EnvError {
                line,
                column: key_column,
                kind: ErrorKind::DigitFirst,
            });
        }
        match p.peek() {
            None | Some('\n' | '\r' | ' ' | '\t' | '=' | '#') => {}
            c => return Err(p.err(key_char(c))),
        }
        p.skip_blank();
        match p.peek() {
            Some('=') => {}
            None | Some('\n' | '\r' | '#') => {
                p.skip_to_eol();
                p.eat_eol();
                out.push(Entry {
                    key,
                    value: None,
                    line,
                });
                continue;
            }
            Some(_) => return Err(p.err(ErrorKind::ExpectedEquals)),
        }
        p.pos += 1;
        p.skip_blank();
        if let Some(value) = p.value(&key)? {
            out.push(Entry {
                key,
                value: Some(value),
                line,
            });
        }
        p.eat_eol();
    }
}

/// The error for `c` where a key character was expected.
fn key_char(c: Option<char>) -> ErrorKind {
    ErrorKind::KeyChar(c.filter(|c| c.is_ascii_punctuation()))
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// Index of the first character of the current line.
    line_start: usize,
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
    /// The 1-based column of the current position.
    fn column(&self) -> usize {
        self.pos - self.line_start + 1
    }
    fn err(&self, kind: ErrorKind) -> EnvError {
        EnvError {
            line: self.line,
            column: self.column(),
            kind,
        }
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
    /// Counts a line break just consumed (the position is after it).
    fn new_line(&mut self) {
        self.line += 1;
        self.line_start = self.pos;
    }
    /// Consumes one line break (`\n`, `\r\n` or `\r`) if present.
    fn eat_eol(&mut self) {
        match self.peek() {
            Some('\r') => {
                self.pos += 1;
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
                self.new_line();
            }
            Some('\n') => {
                self.pos += 1;
                self.new_line();
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
    /// Finds a closing `'` on the current line, returning its index. Linear overall: when there
    /// is none, no later `'` on the line is looked for again (each one would have closed this).
    fn closing_single_quote(&self) -> Option<usize> {
        self.chars[self.pos + 1..]
            .iter()
            .take_while(|c| !matches!(c, '\n' | '\r'))
            .position(|&c| c == '\'')
            .map(|i| self.pos + 1 + i)
    }

    /// Pushes a value character, refusing NUL.
    fn push(
        &self,
        value: &mut String,
        c: char,
        at: (usize, usize),
        key: &str,
    ) -> Result<(), EnvError> {
        if c == '\0' {
            return Err(EnvError {
                line: at.0,
                column: at.1,
                kind: ErrorKind::Nul { key: key.into() },
            });
        }
        value.push(c);
        Ok(())
    }

    /// Parses a value up to the end of its (last) line. `None`: nothing after `=`.
    fn value(&mut self, key: &str) -> Result<Option<String>, EnvError> {
        let mut value = String::new();
        let mut pending_ws = 0;
        let mut any = false;
        while !self.at_eol() {
            let c = self.peek().unwrap_or_default();
            match c {
                ' ' | '\t' => {
                    pending_ws += 1;
                    self.pos += 1;
                    continue;
                }
                '#' => break,
                _ => {}
            }
            value.extend(&self.chars[self.pos - pending_ws..self.pos]);
            pending_ws = 0;
            any = true;
            match c {
                '\'' => match self.closing_single_quote() {
                    Some(end) => {
                        for i in self.pos + 1..end {
                            let at = (self.line, i - self.line_start + 1);
                            self.push(&mut value, self.chars[i], at, key)?;
                        }
                        self.pos = end + 1;
                    }
                    None => {
                        value.push('\'');
                        self.pos += 1;
                    }
                },
                '"' => self.double_quoted(key, &mut value)?,
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(n) if !matches!(n, '\n' | '\r') => {
                            self.push(&mut value, n, (self.line, self.column()), key)?;
                            self.pos += 1;
                        }
                        _ => value.push('\\'),
                    }
                }
                _ => {
                    self.push(&mut value, c, (self.line, self.column()), key)?;
                    self.pos += 1;
                }
            }
        }
        self.skip_to_eol();
        Ok(any.then_some(value))
    }

    fn double_quoted(&mut self, key: &str, value: &mut String) -> Result<(), EnvError> {
        let open = self.err(ErrorKind::Unterminated { key: key.into() });
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return Err(open);
            };
            let at = (self.line, self.column());
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
                    self.new_line();
                    value.push('\n');
                }
                '\n' => {
                    self.new_line();
                    value.push('\n');
                }
                _ => self.push(value, c, at, key)?,
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
        vars.into_iter().next().and_then(|e| e.value)
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
        use ErrorKind::*;
        // (text, line, column, error)
        let cases: &[(&str, usize, usize, ErrorKind)] = &[
            ("A=1\nMY-VAR=1\n", 2, 3, KeyChar(Some('-'))),
            ("1DIGIT=no", 1, 1, DigitFirst),
            ("  9=no", 1, 3, DigitFirst),
            ("a.b=1", 1, 2, KeyChar(Some('.'))),
            ("=1", 1, 1, MissingKey),
            ("  = x", 1, 3, MissingKey),
            ("-x=1", 1, 1, KeyChar(Some('-'))),
            ("KEY VALUE", 1, 5, ExpectedEquals),
            ("export A B=1", 1, 10, ExpectedEquals),
            (
                "A=1\nCERT=\"-----BEGIN\nabc\n",
                2,
                6,
                Unterminated { key: "CERT".into() },
            ),
            ("\u{1e40}Y=1", 1, 1, KeyChar(None)),
            ("\u{e9}=1", 1, 1, KeyChar(None)),
            ("A\u{e9}=1", 1, 2, KeyChar(None)),
            ("A=x\0y", 1, 4, Nul { key: "A".into() }),
            ("A='x\0'", 1, 5, Nul { key: "A".into() }),
            ("A=\"\n\0\"", 2, 1, Nul { key: "A".into() }),
            ("A=x\\\0", 1, 5, Nul { key: "A".into() }),
            ("B\0=1", 1, 2, KeyChar(None)),
        ];
        for (text, line, column, kind) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(
                (err.line, err.column, &err.kind),
                (*line, *column, kind),
                "{text:?}"
            );
        }
        // A NUL in a comment harms nobody.
        assert_eq!(parse("# \0\nA=1 # \0").unwrap().len(), 1);
    }

    #[test]
    fn bare_keys_are_entries_without_value() {
        let cases: &[(&str, &str)] = &[
            ("NOT_AN_ASSIGNMENT", "NOT_AN_ASSIGNMENT"),
            ("  HOME  ", "HOME"),
            ("HOME # from the environment", "HOME"),
            ("HOME#x", "HOME"),
            ("export HOME", "HOME"),
            ("export", "export"),
            ("HOME\r\n", "HOME"),
        ];
        for (text, key) in cases {
            let got = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert_eq!(
                got,
                vec![Entry {
                    key: key.to_string(),
                    value: None,
                    line: 1
                }],
                "{text:?}"
            );
        }
    }

    #[test]
    fn messages_never_quote_the_text() {
        // Every error path, each line carrying a marker that must not come back.
        let marker = "SECRETMARKER";
        let texts = [
            format!("1API_TOKEN={marker}"),
            format!("={marker}"),
            format!("A=\"{marker}"),
            format!("KEY {marker}"),
            format!("MY-VAR={marker}"),
            format!("{marker}+abc/def=="),
            format!("{marker} {marker}"),
            format!("{marker}\u{e9}"),
            format!("A={marker}\0"),
            format!("-----BEGIN PRIVATE KEY-----\n{marker}"),
            format!("K=-----BEGIN PRIVATE KEY-----\n{marker}+/x\n"),
        ];
        for text in &texts {
            let err = parse(text).expect_err(text);
            let shown = format!("{}:{}: {} {:?}", err.line, err.column, err.kind, err.kind);
            assert!(!shown.contains("SECRET"), "{text:?} gave {shown}");
        }
    }

    #[test]
    fn order_duplicates_and_line_counting() {
        let vars = parse("\u{feff}A=1\r\nB=\"x\ny\"\nA=2\n\nC=3").unwrap();
        let got: Vec<(&str, Option<&str>, usize)> = vars
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", Some("1"), 1),
                ("B", Some("x\ny"), 2),
                ("A", Some("2"), 4),
                ("C", Some("3"), 6)
            ]
        );
        let err = parse("A=\"x\ny\"\nB C\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 3));
        let err = parse("A=\"x\r\ny\" \r\n\r\n  B-C\n").unwrap_err();
        assert_eq!((err.line, err.column), (4, 4));
    }

    #[test]
    fn linear_in_the_input() {
        // 100,000 lines: quadratic work would take minutes; linear is milliseconds.
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!("KEY_{i}='v{i}' # c\n"));
        }
        text.push_str(&"'".repeat(100_000));
        text.push('\n');
        let start = std::time::Instant::now();
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 100_001);
        let mut text = format!("A={}", "x'".repeat(100_000));
        text.push_str(&format!("\nB=\"{}\"", " ".repeat(200_000)));
        assert_eq!(parse(&text).unwrap().len(), 2);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
