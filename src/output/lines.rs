//! Byte chunks → whole lines. Pure.
//!
//! Lines end at `\n`; a `\r` right before it is dropped; every other byte passes through
//! unchanged (invalid UTF-8 included). A partial line is held until its newline arrives, EOF,
//! a quiet period (the caller's timer), or until it reaches `limit` bytes, when it is emitted
//! in `limit`-sized pieces. A piece is always emitted whole, so another process's output can
//! never tear it.

/// Splits one process's output stream into lines.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    limit: usize,
    /// A partial line was just emitted without its newline (it reached `limit`, or was
    /// flushed): a newline that follows at once ends that line and is not an empty line.
    cut: bool,
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineSplitter {
    pub(crate) fn new(limit: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            limit: limit.max(1),
            cut: false,
        }
    }

    /// True when bytes without a newline are being held.
    pub(crate) fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Feeds a chunk; calls `emit` for each complete line (without its line ending).
    pub(crate) fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        if data.is_empty() {
            return;
        }
        if std::mem::take(&mut self.cut) {
            if let Some(rest) = data.strip_prefix(b"\r\n") {
                data = rest;
            } else if let Some(rest) = data.strip_prefix(b"\n") {
                data = rest;
            }
        }
        if !self.partial.is_empty() {
            match memchr(b'\n', data) {
                Some(i) => {
                    self.partial.extend_from_slice(&data[..i]);
                    self.emit_partial_pieces(&mut emit, true);
                    data = &data[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(data);
                    self.emit_partial_pieces(&mut emit, false);
                    return;
                }
            }
        }
        while let Some(i) = memchr(b'\n', data) {
            let line = &data[..i];
            if line.len() > self.limit {
                for piece in line.chunks(self.limit) {
                    emit(strip_cr(piece));
                }
            } else {
                emit(strip_cr(line));
            }
            data = &data[i + 1..];
        }
        if !data.is_empty() {
            self.partial.extend_from_slice(data);
            self.emit_partial_pieces(&mut emit, false);
        }
    }

    /// Emits full `limit`-sized pieces of the partial line; with `complete`, the rest too.
    fn emit_partial_pieces(&mut self, emit: &mut impl FnMut(&[u8]), complete: bool) {
        if complete {
            let mut rest: &[u8] = &self.partial;
            while rest.len() > self.limit {
                emit(&rest[..self.limit]);
                rest = &rest[self.limit..];
            }
            emit(strip_cr(rest));
            self.partial.clear();
        } else if self.partial.len() >= self.limit {
            let full = self.partial.len() / self.limit * self.limit;
            for piece in self.partial[..full].chunks(self.limit) {
                emit(piece);
            }
            self.partial.drain(..full);
            self.cut = self.partial.is_empty();
        }
        if self.partial.capacity() > 4 * self.limit.min(1 << 20) && self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    /// Emits the held partial line, if any (EOF or quiet period).
    pub(crate) fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
            self.cut = true;
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limit: usize, chunks: &[&[u8]], flush: bool) -> Vec<Vec<u8>> {
        let mut s = LineSplitter::new(limit);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(l.to_vec()));
        }
        if flush {
            s.flush(|l| out.push(l.to_vec()));
        }
        out
    }

    #[test]
    fn a_flushed_partial_line_ends_at_the_next_newline() {
        let mut s = LineSplitter::new(100);
        let mut out: Vec<Vec<u8>> = Vec::new();
        s.feed(b"Loading...", |l| out.push(l.to_vec()));
        s.flush(|l| out.push(l.to_vec()));
        s.feed(b"\ndone\n", |l| out.push(l.to_vec()));
        assert_eq!(out, vec![b"Loading...".to_vec(), b"done".to_vec()]);
    }

    #[test]
    fn splitting_table() {
        // (limit, chunks, flush at end, expected lines)
        type Case<'a> = (usize, &'a [&'a [u8]], bool, &'a [&'a [u8]]);
        let cases: &[Case] = &[
            (100, &[b"a\nb\n"], false, &[b"a", b"b"]),
            (100, &[b"a\r\nb\r\n"], false, &[b"a", b"b"]),
            (100, &[b"a\rb\n"], false, &[b"a\rb"]),
            (100, &[b"a\x0bb\x0cc\n"], false, &[b"a\x0bb\x0cc"]),
            (100, &[b"\n\n"], false, &[b"", b""]),
            (
                100,
                &[b"hel", b"lo\nwor", b"ld\n"],
                false,
                &[b"hello", b"world"],
            ),
            (100, &[b"no newline"], false, &[]),
            (100, &[b"no newline"], true, &[b"no newline"]),
            (
                100,
                &[b"\xff\xfe bad utf8\n"],
                false,
                &[b"\xff\xfe bad utf8"],
            ),
            (100, &[b"a\r", b"\n"], false, &[b"a"]),
            (4, &[b"abcdefghij\n"], false, &[b"abcd", b"efgh", b"ij"]),
            (4, &[b"abc", b"def", b"ghi"], false, &[b"abcd", b"efgh"]),
            (
                4,
                &[b"abc", b"def", b"ghi"],
                true,
                &[b"abcd", b"efgh", b"i"],
            ),
            (4, &[b"ab", b"cdefg\n"], false, &[b"abcd", b"efg"]),
            // A line exactly `limit` long (or a multiple), its newline in the next read:
            // no empty line after it.
            (4, &[b"abcd", b"\nx\n"], false, &[b"abcd", b"x"]),
            (4, &[b"abcdefgh", b"\n"], false, &[b"abcd", b"efgh"]),
            (4, &[b"abcd", b"\r\n"], false, &[b"abcd"]),
            (4, &[b"abcd\n"], false, &[b"abcd"]),
            (4, &[b"abcd", b"", b"\n"], false, &[b"abcd"]),
            // Only the newline right after the cut is swallowed.
            (4, &[b"abcd", b"\n\n"], false, &[b"abcd", b""]),
        ];
        for (limit, chunks, flush, want) in cases {
            let got = run(*limit, chunks, *flush);
            let want: Vec<Vec<u8>> = want.iter().map(|l| l.to_vec()).collect();
            assert_eq!(got, want, "chunks {chunks:?}");
        }
    }
}
