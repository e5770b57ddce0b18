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
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineSplitter {
    pub(crate) fn new(limit: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// True when bytes without a newline are being held.
    pub(crate) fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Feeds a chunk; calls `emit` for each complete line (without its line ending).
    pub(crate) fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
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
        ];
        for (limit, chunks, flush, want) in cases {
            let got = run(*limit, chunks, *flush);
            let want: Vec<Vec<u8>> = want.iter().map(|l| l.to_vec()).collect();
            assert_eq!(got, want, "chunks {chunks:?}");
        }
    }
}
