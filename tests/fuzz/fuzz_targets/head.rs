//! The response-head path of the HTTP decoder, on heads built from the input: a status line,
//! headers (names from a list the decoder cares about, or raw), CRLF or bare LF endings, and
//! optionally one header long enough to pass the 16 KiB head limit; then a short body.
//! Checks what `chunked` checks plus the head against what was written: the status digits,
//! the framing against the Content-Length/Transfer-Encoding headers, and `Date` values.
//!
//! Input: flags, a cut spec, then lines separated by `\n`: the first line is the status line
//! (after a version picked by the flags), each further line is a header whose first byte
//! picks its name; an empty line ends the head and the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::docker::http::{parse_http_date, Framing, MAX_HEAD};
use registrator_fuzz::harness::{check, decode_all_ways, Src, MAX_DATE};

const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "http/1.1", ""];
const NAMES: &[&str] = &[
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Date",
    "content-length",
    "TRANSFER-ENCODING",
    "connection",
    "Server",
    "Api-Version",
    "Content-Type",
    "X-Long",
    "",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let flags = src.byte();
    let n = usize::from(src.byte() % 16);
    let spec = src.take(n).to_vec();
    check_valid_date(&mut src);
    let rest = src.rest();

    let eol: &[u8] = if flags & 1 == 0 { b"\r\n" } else { b"\n" };
    let version = VERSIONS[usize::from(flags >> 1) % VERSIONS.len()];
    let mut input = Vec::new();
    input.extend_from_slice(version.as_bytes());
    if !version.is_empty() {
        input.push(b' ');
    }
    let mut body: &[u8] = b"";
    let mut off = 0;
    let mut first = true;
    loop {
        let end = rest[off..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| off + p);
        let line = &rest[off..end.unwrap_or(rest.len())];
        let next = end.map_or(rest.len(), |e| e + 1);
        if first {
            input.extend_from_slice(if rest.is_empty() { b"200 OK" } else { line });
            input.extend_from_slice(eol);
        } else if line.is_empty() {
            body = &rest[next..];
            break;
        } else {
            let (pick, value) = line.split_first().unwrap();
            match NAMES.get(usize::from(*pick)) {
                Some(&name) => {
                    input.extend_from_slice(name.as_bytes());
                    input.extend_from_slice(b": ");
                    if name == "X-Long" {
                        // Long enough to reach the head limit from a short input.
                        let len = usize::from(value.first().copied().unwrap_or(0)) * 80;
                        input.resize(input.len() + len, b'x');
                        input.extend_from_slice(value.get(1..).unwrap_or(b""));
                    } else {
                        input.extend_from_slice(value);
                    }
                }
                None => input.extend_from_slice(line),
            }
            input.extend_from_slice(eol);
        }
        first = false;
        if end.is_none() {
            break;
        }
        off = next;
    }
    input.extend_from_slice(eol);
    let head_len = input.len();
    input.extend_from_slice(body);

    let whole = decode_all_ways(&input, &spec);
    // The input has a blank line, so the first head parses or fails.
    assert!(
        whole.error.is_some() || !whole.responses.is_empty(),
        "a complete head gave neither a head nor an error"
    );
    let Some(r) = whole.responses.first() else {
        return;
    };
    let h = &r.head;
    let sp = input
        .iter()
        .position(|&b| b == b' ')
        .expect("a parsed status line has a space");
    let status = std::str::from_utf8(&input[sp + 1..sp + 4])
        .ok()
        .and_then(|s| s.parse().ok());
    assert_eq!(status, Some(h.status), "status digits");
    assert!(
        head_len <= MAX_HEAD + eol.len(),
        "a head over the limit was accepted"
    );
    // The head as the decoder saw it ends at the first blank line.
    let text = String::from_utf8_lossy(&input[..head_len]);
    let text = &text[..find_blank(&text)];
    let headers: Vec<(&str, &str)> = text
        .split('\n')
        .skip(1)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n, v.trim_matches([' ', '\t'])))
        .collect();
    let named = |want: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(want))
            .map(|(_, v)| *v)
            .collect()
    };
    let lengths = named("content-length");
    let chunked = named("transfer-encoding").last().is_some_and(|v| {
        v.rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("chunked")
    });
    match h.framing {
        Framing::Chunked => assert!(chunked, "chunked without the header"),
        Framing::Length(n) => {
            assert!(!chunked, "Transfer-Encoding: chunked beats Content-Length");
            assert!(
                !lengths.is_empty() && lengths.iter().all(|v| v.parse::<u64>() == Ok(n)),
                "Content-Length {n} from {lengths:?}"
            );
        }
        Framing::UntilClose => {
            assert!(
                !chunked && lengths.is_empty(),
                "close-delimited with framing headers"
            )
        }
        Framing::None => {}
    }
    let connection = named("connection").join(",").to_ascii_lowercase();
    if version == "HTTP/1.0" && !connection.contains("keep-alive") {
        assert!(
            !h.keep_alive,
            "HTTP/1.0 keeps the connection only when asked"
        );
    }
    if connection.split(',').all(|t| t.trim() != "close")
        && version == "HTTP/1.1"
        && h.framing != Framing::UntilClose
        && text.starts_with("HTTP/1.1 ")
    {
        assert!(h.keep_alive, "HTTP/1.1 keeps the connection unless told");
    }
});

/// Offset just past the first blank line (`\n\n` or `\n\r\n`), or the whole length.
fn find_blank(s: &str) -> usize {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return i + 2;
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return i + 3;
            }
        }
    }
    b.len()
}

/// `parse_http_date` against a second computation, on a well-formed IMF-fixdate built from
/// six input bytes, and on the raw bytes that follow as text (range only).
fn check_valid_date(src: &mut Src) {
    let y = 1970 + i64::from(src.u16()) % 8030;
    let mo = usize::from(src.byte()) % 12;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let d = 1 + i64::from(src.byte()) % dim[mo];
    let secs = i64::from(src.u16()) % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let text = format!("Mon, {d:02} {} {y} {h:02}:{m:02}:{s:02} GMT", MONTHS[mo]);
    let mut days = 0i64;
    for year in 1970..y {
        days += if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
            366
        } else {
            365
        };
    }
    days += dim[..mo].iter().sum::<i64>() + d - 1;
    assert_eq!(parse_http_date(&text), Some(days * 86_400 + secs), "{text}");

    let n = usize::from(src.byte() % 48);
    let raw = String::from_utf8_lossy(src.take(n)).into_owned();
    if let Some(v) = parse_http_date(&raw) {
        check("date-range", (0..=MAX_DATE).contains(&v), || {
            format!("Date {raw:?} parsed to {v}")
        });
    }
}
