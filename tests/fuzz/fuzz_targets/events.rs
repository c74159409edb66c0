//! The `/events` stream decoder on a whole response, fed whole, cut where the input says and
//! (when short) byte by byte, against a reference built from the HTTP decoder's body and
//! `decode` on each line; and `decode` alone on raw lines.
//!
//! Input: flags, a cut spec, then either the raw response bytes (flags bit 0 clear) or a body
//! the harness frames itself (bit 0 set): chunked in pieces of input-chosen sizes, with
//! Content-Length, or close-delimited, where `0xff 0xfe hi lo b` repeats byte `b`
//! (hi*256+lo)*16 times so that lines can pass `MAX_EVENT` from a small input (two marker
//! bytes, so that runs of 0xff from the mutator do not make every input megabytes long).
//!
//! Checks: whenever no error is anywhere in the stream, every way of feeding gives the
//! reference's events, `ended` and `eof()`; otherwise each way stops at an error the stream
//! really has, after a prefix of the reference's events. After every successful `feed` the
//! unfinished event held (the body after its last newline so far) is at most `MAX_EVENT`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::docker::events::{decode, Action, Error, Event, EventDecoder, MAX_EVENT};
use registrator_fuzz::docker::http::{self, Framing};
use registrator_fuzz::harness::{self, pieces, Src};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let flags = src.byte();
    let n = usize::from(src.byte() % 32);
    let spec = src.take(n).to_vec();
    let input = if flags & 1 == 0 {
        src.rest().to_vec()
    } else {
        synthesize(flags, &mut src)
    };

    // Every line on its own through `decode`.
    if flags & 1 == 0 {
        for line in input.split(|&b| b == b'\n') {
            check_line(line);
        }
    }

    let reference = Reference::new(&input);
    let mut runs = vec![pieces(&input, &[]), pieces(&input, &spec)];
    // The decoder rescans the unfinished event on every feed: on a body of megabytes, keep
    // to a few hundred feeds so one input stays well under the time limit.
    if input.len() > 64 * 1024 {
        let min = input.len() / 256;
        let mut merged: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        let mut len = 0;
        for p in &runs[1] {
            len += p.len();
            if len >= min {
                merged.push(&input[start..start + len]);
                start += len;
                len = 0;
            }
        }
        merged.push(&input[start..]);
        runs[1] = merged;
    }
    if input.len() <= 2048 {
        runs.push(input.chunks(1).collect());
    }
    for cut in &runs {
        let run = run(cut, &reference);
        reference.judge(&run, cut.len());
    }
});

/// Largest synthesized body: room for a line over `MAX_EVENT` and a tail over it.
const BODY_CAP: usize = 2 * MAX_EVENT + 64 * 1024;

/// A response around a body made from the input.
fn synthesize(flags: u8, src: &mut Src) -> Vec<u8> {
    let n = usize::from(src.byte() % 8);
    let sizes = src.take(n).to_vec();
    let mut body = Vec::new();
    let raw = src.rest();
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(&[0xff, 0xfe]) && i + 4 < raw.len() {
            let n = (usize::from(raw[i + 2]) << 8 | usize::from(raw[i + 3])) * 16;
            body.resize((body.len() + n).min(BODY_CAP), raw[i + 4]);
            i += 5;
        } else {
            body.push(raw[i]);
            i += 1;
        }
    }
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n".to_vec();
    match (flags >> 1) & 3 {
        0 | 1 => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut rest = &body[..];
            let mut k = 0;
            while !rest.is_empty() {
                let s = sizes.get(k % sizes.len().max(1)).copied().unwrap_or(0);
                k += 1;
                let n = if s == 0 {
                    rest.len()
                } else {
                    usize::from(s) * 97
                };
                let (a, b) = rest.split_at(n.min(rest.len()));
                out.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
                rest = b;
            }
            if (flags >> 1) & 3 == 1 {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        }
        2 => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
        }
        _ => {
            out.extend_from_slice(b"Connection: close\r\n\r\n");
            out.extend_from_slice(&body);
        }
    }
    out
}

/// `decode` on one line: no panic, and an event agrees with the line read as plain JSON.
fn check_line(line: &[u8]) {
    let got = decode(line);
    let Ok(Some(ev)) = &got else {
        if let Ok(None) = got {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                // `Value` refuses numbers out of f64's range (`1e999999`) that serde skips in
                // a field nobody reads; anything else skipped must not be JSON at all.
                assert!(
                    std::str::from_utf8(line).is_err()
                        || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok(),
                    "skipped line is not JSON"
                );
                return;
            };
            let v = by_name(v, &["Type"]);
            let t = v.get("Type").and_then(Value::as_str);
            assert!(
                t.is_some_and(|t| t != "container"),
                "skipped a container event: {v}"
            );
        }
        return;
    };
    assert!(!ev.id.is_empty(), "event without an ID");
    // Fields the decoder skips are not checked for UTF-8; serde_json's Value checks all.
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            // Also fine: a number beyond f64 in a field the decoder skips (`Value` refuses it,
            // serde skips it).
            assert!(
                std::str::from_utf8(line).is_err()
                    || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok(),
                "decoded line is not JSON: {e}"
            );
            return;
        }
    };
    // serde also reads a struct from an array of its fields in order.
    let mut v = by_name(
        v,
        &[
            "Type", "Action", "Actor", "status", "id", "time", "timeNano",
        ],
    );
    if let Some(a) = v.get_mut("Actor") {
        *a = by_name(a.take(), &["ID", "Attributes"]);
    }
    fn s(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    let actor = v.get("Actor");
    let id = s(actor.and_then(|a| a.get("ID"))).or(s(v.get("id")));
    assert_eq!(Some(ev.id.as_str()), id, "ID of {v}");
    let action = v
        .get("Action")
        .and_then(Value::as_str)
        .or(v.get("status").and_then(Value::as_str))
        .unwrap_or("");
    match &ev.action {
        Action::Other(a) => {
            assert_eq!(a, action);
            assert!(
                !matches!(
                    a.as_str(),
                    "start" | "die" | "destroy" | "remove" | "pause" | "unpause" | "health_status"
                ) && !a.starts_with("health_status:"),
                "known action {a:?} read as Other"
            );
        }
        Action::Health(_) => assert!(action.starts_with("health_status"), "{action:?}"),
        _ => {}
    }
    let nano = v.get("timeNano").and_then(Value::as_i64);
    let secs = v.get("time").and_then(Value::as_i64);
    let want = nano
        .or_else(|| secs.and_then(|t| t.checked_mul(1_000_000_000)))
        .unwrap_or(0);
    assert_eq!(ev.time_nano, want, "time of {v}");
}

/// An array of a struct's fields in order as the object it stands for.
fn by_name(v: Value, names: &[&str]) -> Value {
    match v {
        Value::Array(items) => {
            Value::Object(names.iter().map(|n| n.to_string()).zip(items).collect())
        }
        v => v,
    }
}

/// What a run of the event decoder gave.
struct Run {
    events: Vec<Event>,
    error: Option<Error>,
    ended: bool,
    eof: Option<Result<(), Error>>,
}

fn run(cut: &[&[u8]], reference: &Reference) -> Run {
    let mut d = EventDecoder::new();
    let mut out = Run {
        events: Vec::new(),
        error: None,
        ended: false,
        eof: None,
    };
    let mut fed = 0;
    for piece in cut {
        fed += piece.len();
        if let Err(e) = d.feed(piece) {
            out.error = Some(e);
            return out;
        }
        // The bound: an unfinished event over MAX_EVENT must have been refused.
        let tail = reference.tail_at(fed);
        harness::check("event-bound", tail <= MAX_EVENT, || {
            format!("feed accepted an unfinished event of {tail} bytes after {fed} input bytes")
        });
        loop {
            match d.next_event() {
                Ok(Some(ev)) => out.events.push(ev),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        assert!(
            !d.ended() || reference.ended,
            "ended() before the body's end"
        );
    }
    out.ended = d.ended();
    out.eof = Some(d.eof());
    out
}

/// The stream as the pieces below the event decoder see it, and what it must give.
struct Reference {
    /// The HTTP status, when the head parsed.
    status: Option<u16>,
    framing: Option<Framing>,
    http_error: Option<http::Error>,
    /// Body bytes before the end or the HTTP error.
    body: Vec<u8>,
    /// Where each body slice lies in the input.
    segments: Vec<(usize, usize)>,
    /// Offsets of the newlines in `body`.
    newlines: Vec<usize>,
    ended: bool,
    /// The events of the complete lines, up to the first line that fails.
    events: Vec<Event>,
    line_error: Option<Error>,
    /// Some line (complete or not) is longer than MAX_EVENT.
    too_large: bool,
}

impl Reference {
    fn new(input: &[u8]) -> Reference {
        let mut segments = Vec::new();
        let d = harness::decode(input, &[input], &mut segments);
        let first = d.responses.first();
        let mut r = Reference {
            status: first.map(|r| r.head.status),
            framing: first.map(|r| r.head.framing),
            http_error: d.error.clone(),
            body: first.map(|r| r.body.clone()).unwrap_or_default(),
            segments,
            newlines: Vec::new(),
            ended: first.is_some_and(|r| r.end),
            events: Vec::new(),
            line_error: None,
            too_large: false,
        };
        // Only the first response is the event stream; bytes after its end are ignored.
        if r.ended {
            r.http_error = None;
            let len = r.body.len();
            let mut total = 0;
            r.segments.retain(|&(_, n)| {
                total += n;
                total <= len
            });
        }
        r.newlines = (0..r.body.len()).filter(|&i| r.body[i] == b'\n').collect();
        let mut lines: Vec<&[u8]> = r.body.split(|&b| b == b'\n').collect();
        let tail = lines.pop().unwrap_or(b"");
        r.too_large = tail.len() > MAX_EVENT || lines.iter().any(|l| l.len() > MAX_EVENT);
        for line in lines {
            if line.len() > MAX_EVENT {
                r.line_error = Some(Error::TooLarge);
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match decode(line) {
                Ok(Some(ev)) => r.events.push(ev),
                Ok(None) => {}
                Err(e) => {
                    r.line_error = Some(e);
                    break;
                }
            }
        }
        r
    }

    /// Length of the unfinished line once `fed` input bytes went in.
    fn tail_at(&self, fed: usize) -> usize {
        let seen: usize = self
            .segments
            .iter()
            .map(|&(at, n)| fed.saturating_sub(at).min(n))
            .sum();
        let seen = seen.min(self.body.len());
        match self.newlines.partition_point(|&i| i < seen) {
            0 => seen,
            n => seen - self.newlines[n - 1] - 1,
        }
    }

    fn errors(&self) -> Vec<Error> {
        if let Some(s) = self.status.filter(|&s| s != 200) {
            return vec![Error::Status(s)];
        }
        let mut v = Vec::new();
        v.extend(self.http_error.clone().map(Error::Http));
        v.extend(self.line_error.clone());
        if self.too_large {
            v.push(Error::TooLarge);
        }
        v
    }

    fn judge(&self, run: &Run, pieces: usize) {
        let errors = self.errors();
        let ctx = || {
            format!(
                "{pieces} pieces, status {:?}, framing {:?}",
                self.status, self.framing
            )
        };
        match &run.error {
            None => {
                assert!(
                    errors.is_empty(),
                    "no error, but the stream has {errors:?} ({})",
                    ctx()
                );
                assert_eq!(run.events, self.events, "events ({})", ctx());
                assert_eq!(run.ended, self.ended, "ended ({})", ctx());
                let unfinished = self.body.rsplit(|&b| b == b'\n').next().unwrap_or(b"");
                let clean_close = self.ended || self.framing == Some(Framing::UntilClose);
                let want = if clean_close && unfinished.iter().all(u8::is_ascii_whitespace) {
                    Ok(())
                } else {
                    Err(Error::Http(http::Error::Truncated))
                };
                assert_eq!(run.eof, Some(want), "eof ({})", ctx());
            }
            Some(e) => {
                assert!(
                    errors.contains(e),
                    "error {e:?}, but the stream has {errors:?} ({})",
                    ctx()
                );
                assert!(
                    self.events.starts_with(&run.events),
                    "events before the error are not the reference's ({})",
                    ctx()
                );
                if Some(e) == self.line_error.as_ref() && !self.too_large {
                    assert_eq!(run.events, self.events, "events before {e:?} ({})", ctx());
                }
            }
        }
    }
}
