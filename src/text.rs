//! Small text encoders shared by several commands: shell quoting and JSON strings.

/// Quotes one word for a POSIX shell as Python's `shlex.quote` does (honcho uses it): unchanged
/// if it is non-empty and every byte is in `[A-Za-z0-9_@%+=:,./-]`, otherwise single-quoted with
/// each `'` written as `'"'"'`.
pub(crate) fn shell_quote(word: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !word.is_empty() && word.bytes().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

/// Appends `text` as a JSON string literal. Invalid UTF-8 becomes U+FFFD; `"`, `\` and control
/// characters (and DEL) are escaped; everything else is copied as it is.
pub(crate) fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for chunk in text.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..0x20 | 0x7f => b"",
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            if escape.is_empty() {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

/// `text` as a JSON string literal.
pub(crate) fn json_str(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    json_string(&mut out, text.as_bytes());
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        let cases = [
            ("abc", "abc"),
            ("a/b.c:d,e=f+g@h%i-j_k", "a/b.c:d,e=f+g@h%i-j_k"),
            ("a b", "'a b'"),
            ("", "''"),
            ("it's", "'it'\"'\"'s'"),
            ("$HOME", "'$HOME'"),
            ("a|b", "'a|b'"),
            ("h\u{e9}", "'h\u{e9}'"),
            ("'", "''\"'\"''"),
            ("a\nb", "'a\nb'"),
            ("~", "'~'"),
            ("*", "'*'"),
            ("\"q\"", "'\"q\"'"),
        ];
        for (word, want) in cases {
            assert_eq!(shell_quote(word), want, "{word:?}");
        }
    }

    #[test]
    fn json_strings() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "\"plain\""),
            (
                b"a\"b\\c\nd\x01\x7f\t\r",
                "\"a\\\"b\\\\c\\nd\\u0001\\u007f\\t\\r\"",
            ),
            (b"bad:\xff ok:\xc3\xa9", "\"bad:\u{fffd} ok:\u{e9}\""),
            (b"", "\"\""),
        ];
        for (text, want) in cases {
            let mut out = Vec::new();
            json_string(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{text:?}");
        }
        assert_eq!(json_str("x\ny"), "\"x\\ny\"");
    }
}
