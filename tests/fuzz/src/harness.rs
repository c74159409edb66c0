//! What the fuzz targets share: reading control bytes, cutting an input into pieces, the
//! HTTP decoding driver with its invariants, and the switch for findings already reported.

use std::sync::OnceLock;

use crate::docker::http::{Error, Framing, Head, Output, ResponseDecoder};

/// Whether a finding with this tag is already reported and should not stop a run.
///
/// `FUZZ_KNOWN` is a comma-separated list of tags (`all` for every one). Unset, every broken
/// invariant is a crash. Only assertion-style checks have tags; a panic inside the code under
/// test is always a crash.
pub fn known(tag: &str) -> bool {
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == tag || k == "all")
}

/// Panics with `[tag] message` when `ok` is false, unless the tag is in `FUZZ_KNOWN`.
#[track_caller]
pub fn check(tag: &str, ok: bool, msg: impl FnOnce() -> String) {
    if !ok && !known(tag) {
        panic!("[{tag}] {}", msg());
    }
}

/// Control bytes read from the front of an input; zeros once it is used up.
pub struct Src<'a> {
    data: &'a [u8],
}

impl<'a> Src<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Src { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data
    }
}

/// Cuts `input` into consecutive pieces whose lengths come from `spec` (cycled): 0 gives an
/// empty piece, 1..=127 that many bytes, 128..=255 a multiple of 64 up to 8 KiB. An empty spec
/// gives the input whole. The pieces always cover the whole input; after 4096 pieces the rest
/// is the last one.
pub fn pieces<'a>(input: &'a [u8], spec: &[u8]) -> Vec<&'a [u8]> {
    if spec.is_empty() {
        return vec![input];
    }
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let b = spec[i % spec.len()];
        i += 1;
        let n = match b {
            0 => 0,
            1..=127 => usize::from(b),
            _ => (usize::from(b - 127)) * 64,
        };
        let (a, r) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = r;
        // Zeros in the spec give empty pieces; a few thousand pieces are plenty.
        if out.len() >= 4096 {
            out.push(rest);
            break;
        }
    }
    out
}

/// One response on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
    /// `End` came out of `feed`.
    pub end: bool,
}

/// Everything a run of the decoder gave. Equal for every way of cutting the same input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub responses: Vec<Response>,
    pub error: Option<Error>,
    /// `eof()` after all input (when there was no error): `Ok(true)` for `End`.
    pub eof: Option<Result<bool, Error>>,
    /// Bytes after the last response that was decoded (more than `MAX_RESPONSES`).
    pub stopped: bool,
}

/// Responses decoded from one connection (keep-alive: the decoder is `reset` after each).
pub const MAX_RESPONSES: usize = 4;

/// Runs a decoder over `pieces` (consecutive slices of `input`), resetting it after each
/// complete response. Checks the `feed` contract on the way; returns what it produced and, in
/// `segments`, where each `Data` slice lies in `input` (offset, length).
pub fn decode(input: &[u8], pieces: &[&[u8]], segments: &mut Vec<(usize, usize)>) -> Decoded {
    let mut d = ResponseDecoder::new();
    let mut out = Decoded::default();
    let mut ended = false;
    // Reset for a next response whose head has not come out yet.
    let mut awaiting = false;
    let base = input.as_ptr() as usize;
    'pieces: for piece in pieces {
        let mut pos = 0;
        let mut calls = 0usize;
        loop {
            calls += 1;
            check("no-progress", calls <= 2 * piece.len() + 4, || {
                format!("{calls} feed calls on a piece of {} bytes", piece.len())
            });
            let rest = &piece[pos..];
            if ended && !rest.is_empty() {
                if out.responses.len() >= MAX_RESPONSES {
                    out.stopped = true;
                    break 'pieces;
                }
                d.reset();
                ended = false;
                awaiting = true;
            }
            let (used, item) = match d.feed(rest) {
                Ok(x) => x,
                Err(e) => {
                    out.error = Some(e);
                    break 'pieces;
                }
            };
            assert!(
                used <= rest.len(),
                "feed used {used} of {} bytes",
                rest.len()
            );
            pos += used;
            match item {
                None => {
                    check("zero-none", !(used == 0 && !rest.is_empty()), || {
                        format!(
                            "feed returned (0, None) on {} bytes of input before the end",
                            rest.len()
                        )
                    });
                    check("none-leftover", pos == piece.len(), || {
                        format!("feed returned None with {} bytes left", piece.len() - pos)
                    });
                    break;
                }
                Some(Output::Head(h)) => {
                    assert!(used > 0, "a head from no input");
                    assert!(
                        out.responses.last().is_none_or(|r| r.end),
                        "a second head inside one response"
                    );
                    head_sane(&h);
                    awaiting = false;
                    out.responses.push(Response {
                        head: h,
                        body: Vec::new(),
                        end: false,
                    });
                }
                Some(Output::Data(b)) => {
                    assert!(!b.is_empty(), "empty Data item");
                    let r = out.responses.last_mut().expect("Data before a head");
                    assert!(!r.end, "Data after End");
                    // Borrowed from the input, and the last bytes consumed.
                    assert_eq!(
                        b.as_ptr() as usize + b.len(),
                        rest.as_ptr() as usize + used,
                        "Data is not the tail of the consumed input"
                    );
                    segments.push((b.as_ptr() as usize - base, b.len()));
                    r.body.extend_from_slice(b);
                    if let Framing::Length(n) = r.head.framing {
                        assert!(r.body.len() as u64 <= n, "more body than Content-Length");
                    }
                }
                Some(Output::End) => {
                    let r = out.responses.last_mut().expect("End before a head");
                    assert!(!r.end, "End twice");
                    r.end = true;
                    ended = true;
                }
            }
        }
    }
    if out.error.is_none() && !out.stopped {
        match d.feed(&[]) {
            Ok((0, None)) => {}
            other => panic!("feed(&[]) after all input was drained gave {other:?}"),
        }
        let eof = d.eof().map(|o| matches!(o, Some(Output::End)));
        let last = out.responses.last();
        let want = match last {
            _ if awaiting => Err(Error::Truncated),
            Some(r) if r.end => Ok(false),
            Some(r) if r.head.framing == Framing::UntilClose => Ok(true),
            _ => Err(Error::Truncated),
        };
        assert_eq!(eof, want, "eof() for {last:?}");
        let again = d.eof().map(|o| matches!(o, Some(Output::End)));
        assert_eq!(
            again,
            if eof.is_ok() { Ok(false) } else { eof.clone() },
            "a second eof()"
        );
        out.eof = Some(eof);
    }
    for (i, r) in out.responses.iter().enumerate() {
        let last = i + 1 == out.responses.len();
        match r.head.framing {
            Framing::None => assert!(r.body.is_empty(), "a body without framing"),
            Framing::Length(n) if r.end => assert_eq!(r.body.len() as u64, n, "Content-Length"),
            Framing::UntilClose => {
                assert!(!r.end, "End from feed for a close-delimited body");
                assert!(last, "a response after a close-delimited body");
            }
            _ => {}
        }
        if !last {
            assert!(r.end, "an unfinished response followed by another");
        }
    }
    out
}

/// Latest `Date` accepted: 9999-12-31T23:59:60Z.
pub const MAX_DATE: i64 = 253_402_300_800;

/// What every parsed head must satisfy.
pub fn head_sane(h: &Head) {
    check("status-range", (100..=999).contains(&h.status), || {
        format!("status {} accepted: {h:?}", h.status)
    });
    let no_body = (100..200).contains(&h.status) || h.status == 204 || h.status == 304;
    assert_eq!(
        no_body,
        h.framing == Framing::None,
        "framing for status: {h:?}"
    );
    if h.framing == Framing::UntilClose {
        assert!(
            !h.keep_alive,
            "keep-alive with a close-delimited body: {h:?}"
        );
    }
    if let Some(d) = h.date {
        check("date-range", (0..=MAX_DATE).contains(&d), || {
            format!("Date parsed to {d}, outside 1970..=9999: {h:?}")
        });
    }
}

/// Decodes `input` whole, cut by `spec` and, when short, byte by byte; all must agree.
/// Returns the whole run.
pub fn decode_all_ways(input: &[u8], spec: &[u8]) -> Decoded {
    let mut segments = Vec::new();
    let whole = decode(input, &[input], &mut segments);
    let cut = decode(input, &pieces(input, spec), &mut Vec::new());
    assert_eq!(whole, cut, "whole vs cut by {spec:?}");
    if input.len() <= 1024 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let by_byte = decode(input, &bytes, &mut Vec::new());
        assert_eq!(whole, by_byte, "whole vs byte by byte");
    }
    whole
}
