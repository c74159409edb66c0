//! Sans-I/O HTTP/1.1 response decoding: bytes in, a head and body slices out.
//!
//! No socket is touched here. [`ResponseDecoder::feed`] takes whatever bytes the caller read,
//! consumes a prefix of them and returns at most one item: the parsed [`Head`], a slice of body
//! bytes (borrowed from the input, never copied), or the end of the body. The body may be framed
//! by `Content-Length`, by chunked transfer coding, or by the end of the connection.
//!
//! Every unbounded thing on the wire has a hard limit: the head ([`MAX_HEAD`]), a chunk-size line
//! or trailer line ([`MAX_CHUNK_LINE`]) and a chunk's declared size ([`MAX_CHUNK_SIZE`]). Exceeding
//! one is an [`Error`], never a larger allocation. The only buffer is the head's, reused.

use std::fmt;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) or trailer line accepted.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Largest single chunk a peer may announce. Data is streamed, not buffered, but an absurd size
/// says the peer is not speaking HTTP.
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    HeadTooLarge,
    BadStatusLine,
    BadHeader,
    BadContentLength,
    BadChunkSize,
    ChunkLineTooLong,
    ChunkTooLarge,
    BadChunkEnd,
    /// The connection closed before the body was complete.
    Truncated,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::HeadTooLarge => "response head larger than 16 KiB",
            Error::BadStatusLine => "malformed status line",
            Error::BadHeader => "malformed header line",
            Error::BadContentLength => "invalid Content-Length",
            Error::BadChunkSize => "invalid chunk size",
            Error::ChunkLineTooLong => "chunk-size or trailer line longer than 1 KiB",
            Error::ChunkTooLarge => "chunk larger than 64 MiB",
            Error::BadChunkEnd => "chunk data not followed by CRLF",
            Error::Truncated => "connection closed in the middle of the response",
        })
    }
}

impl std::error::Error for Error {}

/// How the body after the head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
    /// The `Date` header as Unix seconds, when present and well-formed.
    pub date: Option<i64>,
}

/// One item out of the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    Head(Head),
    Data(&'a [u8]),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    UntilClose,
    /// In a chunk-size line: value so far, whether a digit was seen, whether we are past the
    /// digits (in whitespace or an extension), and the line length so far.
    ChunkSize {
        value: u64,
        digits: bool,
        tail: bool,
        len: usize,
    },
    /// Saw CR at the end of a chunk-size line; holds the size.
    ChunkSizeLf(u64),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// In the trailer section: length of the current line (0 at the start of a line).
    Trailer {
        len: usize,
        cr: bool,
    },
    /// The body is complete; the next call reports `End`.
    EndPending,
    Done,
}

/// Decodes one HTTP/1.1 response. Create a new one (or [`reset`](Self::reset)) per response.
#[derive(Debug)]
pub struct ResponseDecoder {
    state: State,
    head: Vec<u8>,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseDecoder {
    pub fn new() -> Self {
        ResponseDecoder {
            state: State::Head,
            head: Vec::new(),
        }
    }

    /// Part of a head, of a chunk-size line, of a chunk or of its CRLF has arrived and the rest
    /// has not: a peer that writes whole frames has stalled if it stays so. Between chunks
    /// (and before the head starts) the stream is merely idle.
    pub fn mid_frame(&self) -> bool {
        match self.state {
            State::Head => !self.head.is_empty(),
            State::ChunkSize {
                digits, tail, len, ..
            } => digits || tail || len > 0,
            State::ChunkSizeLf(_) | State::ChunkDataCr | State::ChunkDataLf => true,
            State::ChunkData(left) => left > 0,
            State::Trailer { len, cr } => len > 0 || cr,
            State::Length(_) | State::UntilClose | State::EndPending | State::Done => false,
        }
    }

    /// Ready for the next response on the same connection; keeps the head buffer's capacity.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.head.clear();
    }

    /// Consumes a prefix of `input` and returns how many bytes were used and at most one item.
    /// `(0, None)` is returned only for empty input or after the end.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Output<'a>>), Error> {
        let mut used = 0;
        loop {
            if self.state == State::EndPending {
                self.state = State::Done;
                return Ok((used, Some(Output::End)));
            }
            let rest = &input[used..];
            if rest.is_empty() {
                return Ok((used, None));
            }
            match self.state {
                State::Head => {
                    let (n, head) = self.feed_head(rest)?;
                    used += n;
                    if let Some(head) = head {
                        return Ok((used, Some(Output::Head(head))));
                    }
                }
                State::Length(remaining) => {
                    let n = (remaining.min(rest.len() as u64)) as usize;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::EndPending
                    } else {
                        State::Length(left)
                    };
                    return Ok((used + n, Some(Output::Data(&rest[..n]))));
                }
                State::UntilClose => return Ok((input.len(), Some(Output::Data(rest)))),
                State::ChunkData(remaining) => {
                    let n = (remaining.min(rest.len() as u64)) as usize;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::ChunkDataCr
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok((used + n, Some(Output::Data(&rest[..n]))));
                }
                State::Done => return Ok((used, None)),
                _ => {
                    used += 1;
                    self.chunk_byte(rest[0])?;
                }
            }
        }
    }

    /// The peer closed the connection. Returns `End` when that ends the body properly.
    pub fn eof(&mut self) -> Result<Option<Output<'static>>, Error> {
        match self.state {
            State::UntilClose => {
                self.state = State::Done;
                Ok(Some(Output::End))
            }
            State::Done | State::EndPending => Ok(None),
            _ => Err(Error::Truncated),
        }
    }

    /// Buffers head bytes up to the blank line, then parses. Returns bytes used.
    fn feed_head(&mut self, input: &[u8]) -> Result<(usize, Option<Head>), Error> {
        let start = self.head.len();
        // Look for the end of the head in the buffered tail plus the new input, without
        // copying more than the head itself.
        let search_from = start.saturating_sub(3);
        let room = MAX_HEAD - start;
        let take = input.len().min(room);
        self.head.extend_from_slice(&input[..take]);
        match find_head_end(&self.head[search_from..]) {
            Some(end) => {
                let end = search_from + end;
                let used = end - start;
                self.head.truncate(end);
                let head = parse_head(&self.head)?;
                self.state = match head.framing {
                    Framing::None | Framing::Length(0) => State::EndPending,
                    Framing::Length(n) => State::Length(n),
                    Framing::UntilClose => State::UntilClose,
                    Framing::Chunked => State::ChunkSize {
                        value: 0,
                        digits: false,
                        tail: false,
                        len: 0,
                    },
                };
                Ok((used, Some(head)))
            }
            None if self.head.len() >= MAX_HEAD => Err(Error::HeadTooLarge),
            None => Ok((take, None)),
        }
    }

    /// Advances the chunked-coding state machine by one byte.
    fn chunk_byte(&mut self, b: u8) -> Result<(), Error> {
        self.state = match self.state {
            State::ChunkSize {
                value,
                digits,
                tail,
                len,
            } => {
                let len = len + 1;
                if len > MAX_CHUNK_LINE {
                    return Err(Error::ChunkLineTooLong);
                }
                match b {
                    b'\r' | b'\n' if !digits => return Err(Error::BadChunkSize),
                    b'\r' => State::ChunkSizeLf(value),
                    b'\n' => return self.chunk_size_done(value),
                    _ if tail => {
                        if b < 0x20 && b != b'\t' {
                            return Err(Error::BadChunkSize);
                        }
                        State::ChunkSize {
                            value,
                            digits,
                            tail,
                            len,
                        }
                    }
                    b';' | b' ' | b'\t' if digits => State::ChunkSize {
                        value,
                        digits,
                        tail: true,
                        len,
                    },
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(Error::BadChunkSize)?;
                        let value = value * 16 + u64::from(d);
                        if value > MAX_CHUNK_SIZE {
                            return Err(Error::ChunkTooLarge);
                        }
                        State::ChunkSize {
                            value,
                            digits: true,
                            tail,
                            len,
                        }
                    }
                }
            }
            State::ChunkSizeLf(value) => {
                if b != b'\n' {
                    return Err(Error::BadChunkSize);
                }
                return self.chunk_size_done(value);
            }
            State::ChunkDataCr => match b {
                b'\r' => State::ChunkDataLf,
                b'\n' => Self::next_chunk(),
                _ => return Err(Error::BadChunkEnd),
            },
            State::ChunkDataLf => match b {
                b'\n' => Self::next_chunk(),
                _ => return Err(Error::BadChunkEnd),
            },
            State::Trailer { len, cr } => match b {
                b'\n' if len == 0 => State::EndPending,
                b'\n' => State::Trailer { len: 0, cr: false },
                // A CR only ends a line, right before its LF.
                _ if cr => return Err(Error::BadHeader),
                _ if len + 1 > MAX_CHUNK_LINE => return Err(Error::ChunkLineTooLong),
                b'\r' if len == 0 => State::Trailer { len, cr: true },
                b'\r' => State::Trailer {
                    len: len + 1,
                    cr: true,
                },
                _ => State::Trailer {
                    len: len + 1,
                    cr: false,
                },
            },
            other => other,
        };
        Ok(())
    }

    fn next_chunk() -> State {
        State::ChunkSize {
            value: 0,
            digits: false,
            tail: false,
            len: 0,
        }
    }

    fn chunk_size_done(&mut self, value: u64) -> Result<(), Error> {
        self.state = if value == 0 {
            State::Trailer { len: 0, cr: false }
        } else {
            State::ChunkData(value)
        };
        Ok(())
    }
}

/// Index just past the blank line ending the head (`\r\n\r\n` or a bare `\n\n`).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let after = &buf[nl + 1..];
        if after.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if after.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn parse_head(raw: &[u8]) -> Result<Head, Error> {
    let text = std::str::from_utf8(raw).map_err(|_| Error::BadHeader)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().ok_or(Error::BadStatusLine)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(Error::BadStatusLine),
    };
    let code = parts.next().unwrap_or("");
    // Three digits, the first 1..=5 (RFC 9110 section 15).
    if code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
        || !(b'1'..=b'5').contains(&code.as_bytes()[0])
    {
        return Err(Error::BadStatusLine);
    }
    let status: u16 = code.parse().map_err(|_| Error::BadStatusLine)?;

    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    let mut date = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(Error::BadHeader)?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::BadHeader);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            if !value.bytes().all(|b| b.is_ascii_digit()) || value.is_empty() {
                return Err(Error::BadContentLength);
            }
            let n: u64 = value.parse().map_err(|_| Error::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::BadContentLength);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("date") {
            date = parse_http_date(value);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Head {
        status,
        framing,
        keep_alive,
        date,
    })
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut it = s.split_ascii_whitespace();
    let _weekday = it.next()?;
    // Digits only: a sign is not part of an IMF-fixdate (and "-99999999999" hours would
    // overflow the arithmetic below).
    let num = |s: &str| -> Option<i64> {
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let day = num(it.next()?)?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = num(it.next()?)?;
    let mut hms = it.next()?.split(':');
    let h = num(hms.next()?)?;
    let m = num(hms.next()?)?;
    let sec = num(hms.next()?)?;
    if it.next()? != "GMT"
        || !(1970..=9999).contains(&year)
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || sec > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes (0 = all at once); returns the head, the body
    /// and whether the end was seen.
    fn decode(input: &[u8], step: usize) -> Result<(Option<Head>, Vec<u8>, bool), Error> {
        let mut d = ResponseDecoder::new();
        let mut head = None;
        let mut body = Vec::new();
        let mut end = false;
        let step = if step == 0 { input.len().max(1) } else { step };
        for piece in input.chunks(step) {
            let mut pos = 0;
            loop {
                let (used, out) = d.feed(&piece[pos..])?;
                pos += used;
                match out {
                    Some(Output::Head(h)) => head = Some(h),
                    Some(Output::Data(b)) => body.extend_from_slice(b),
                    Some(Output::End) => end = true,
                    None => break,
                }
            }
            assert_eq!(pos, piece.len(), "all input consumed");
        }
        if !end {
            if let Some(Output::End) = d.feed(&[])?.1 {
                end = true;
            }
        }
        Ok((head, body, end))
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nDate: Sat, 21 Nov 2026 15:04:05 GMT\r\nDocker-Experimental: false\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld\n\r\n0\r\nX-Trailer: a\r\n\r\n";

    #[test]
    fn chunked_at_every_split() {
        let (head, body, end) = decode(CHUNKED, 0).unwrap();
        let head = head.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.keep_alive);
        assert_eq!(head.date, Some(1_795_273_445));
        assert_eq!(body, b"hello world\n");
        assert!(end);
        for step in 1..CHUNKED.len() {
            let (h2, b2, e2) = decode(CHUNKED, step).unwrap();
            assert_eq!(h2.as_ref(), Some(&head), "step {step}");
            assert_eq!(b2, body, "step {step}");
            assert!(e2, "step {step}");
        }
        // Every split into two pieces.
        for cut in 0..=CHUNKED.len() {
            let mut d = ResponseDecoder::new();
            let mut body = Vec::new();
            let mut end = false;
            for piece in [&CHUNKED[..cut], &CHUNKED[cut..]] {
                let mut pos = 0;
                while let (used, Some(out)) = d.feed(&piece[pos..]).unwrap() {
                    pos += used;
                    match out {
                        Output::Data(b) => body.extend_from_slice(b),
                        Output::End => end = true,
                        Output::Head(_) => {}
                    }
                }
            }
            assert_eq!(body, b"hello world\n", "cut {cut}");
            assert!(end, "cut {cut}");
        }
    }

    #[test]
    fn content_length_and_no_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKtrailing";
        let mut d = ResponseDecoder::new();
        let (n, out) = d.feed(r).unwrap();
        assert!(matches!(
            out,
            Some(Output::Head(Head {
                framing: Framing::Length(2),
                ..
            }))
        ));
        let (m, out) = d.feed(&r[n..]).unwrap();
        assert_eq!(out, Some(Output::Data(b"OK")));
        assert_eq!(d.feed(&r[n + m..]).unwrap(), (0, Some(Output::End)));
        assert_eq!(
            d.feed(&r[n + m..]).unwrap(),
            (0, None),
            "nothing after the end"
        );

        let (h, body, end) = decode(b"HTTP/1.1 204 No Content\r\n\r\n", 0).unwrap();
        assert_eq!(h.unwrap().framing, Framing::None);
        assert!(body.is_empty() && end);
        let (h, _, end) = decode(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0).unwrap();
        assert_eq!(h.unwrap().framing, Framing::Length(0));
        assert!(end);
    }

    #[test]
    fn until_close_and_connection_close() {
        let mut d = ResponseDecoder::new();
        let r = b"HTTP/1.0 200 OK\r\n\r\nabc";
        let (n, out) = d.feed(r).unwrap();
        match out {
            Some(Output::Head(h)) => {
                assert_eq!(h.framing, Framing::UntilClose);
                assert!(!h.keep_alive);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(d.feed(&r[n..]).unwrap(), (3, Some(Output::Data(b"abc"))));
        assert_eq!(d.eof().unwrap(), Some(Output::End));
        let (h, _, _) = decode(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            0,
        )
        .unwrap();
        assert!(!h.unwrap().keep_alive);
        // Bare LF line endings are tolerated.
        let (h, b, e) = decode(b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx", 0).unwrap();
        assert_eq!(h.unwrap().status, 200);
        assert_eq!(b, b"x");
        assert!(e);
    }

    #[test]
    fn truncation_is_an_error() {
        for r in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-",
        ] {
            let mut d = ResponseDecoder::new();
            let mut pos = 0;
            while let (n, Some(_)) = d.feed(&r[pos..]).unwrap() {
                pos += n;
            }
            assert_eq!(
                d.eof(),
                Err(Error::Truncated),
                "{:?}",
                String::from_utf8_lossy(r)
            );
        }
    }

    #[test]
    fn hostile_input() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let cases: &[(&str, Error)] = &[
            ("zz\r\n", Error::BadChunkSize),
            ("\r\n", Error::BadChunkSize),
            ("-5\r\n", Error::BadChunkSize),
            ("5\rX", Error::BadChunkSize),
            ("5 x\x01\r\n", Error::BadChunkSize),
            ("ffffffffffffffffffff\r\n", Error::ChunkTooLarge),
            ("4000001\r\n", Error::ChunkTooLarge),
            ("3\r\nabcX", Error::BadChunkEnd),
            ("3\r\nabc\rX", Error::BadChunkEnd),
        ];
        for (body, want) in cases {
            let input = format!("{head}{body}");
            for step in [0, 1, 2, 7] {
                assert_eq!(
                    decode(input.as_bytes(), step).err().as_ref(),
                    Some(want),
                    "{body:?} step {step}"
                );
            }
        }
        let long_ext = format!("{head}5;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            decode(long_ext.as_bytes(), 3).err(),
            Some(Error::ChunkLineTooLong)
        );
        let long_trailer = format!("{head}0\r\nX: {}\r\n\r\n", "t".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            decode(long_trailer.as_bytes(), 0).err(),
            Some(Error::ChunkLineTooLong)
        );

        // CR only right before LF in trailers, and a run of CRs counts against the bound.
        for t in ["0\r\nX: 1\r\r\n\r\n", "0\r\n\r\r\n"] {
            assert_eq!(
                decode(format!("{head}{t}").as_bytes(), 1).err(),
                Some(Error::BadHeader),
                "{t:?}"
            );
        }
        let crs = format!("{head}0\r\nX{}", "\r".repeat(3));
        assert_eq!(decode(crs.as_bytes(), 0).err(), Some(Error::BadHeader));

        let big_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "h".repeat(MAX_HEAD));
        for step in [0, 1000] {
            assert_eq!(
                decode(big_head.as_bytes(), step).err(),
                Some(Error::HeadTooLarge)
            );
        }
        for bad in [
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            // Found by fuzzing: three digits, but no status.
            "HTTP/1.1 000 OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/1.1 600 OK\r\n\r\n",
            "garbage\r\n\r\n",
            "\r\n\r\n",
        ] {
            assert_eq!(
                decode(bad.as_bytes(), 0).err(),
                Some(Error::BadStatusLine),
                "{bad:?}"
            );
        }
        for bad in [
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        ] {
            assert_eq!(
                decode(bad.as_bytes(), 0).err(),
                Some(Error::BadHeader),
                "{bad:?}"
            );
        }
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(
                decode(bad.as_bytes(), 0).err(),
                Some(Error::BadContentLength),
                "{bad:?}"
            );
        }
        assert_eq!(
            decode(b"HTTP/1.1 200 OK\r\nX: \xff\xfe\r\n\r\n", 0).err(),
            Some(Error::BadHeader)
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 999999999999 08:49:37 GMT"),
            None,
            "no overflow"
        );
        assert_eq!(parse_http_date("Sun, 06 Nov -5 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        // Found by fuzzing: signs, and values that would overflow the arithmetic.
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 -1:00:00 GMT"), None);
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 -9999999999999999:00:00 GMT"),
            None
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:+5:00 GMT"), None);
        assert_eq!(parse_http_date("Thu, -1 Jan 1970 00:00:00 GMT"), None);
    }
}
