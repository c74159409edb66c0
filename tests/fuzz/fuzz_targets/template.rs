//! The tag templates (`template::Template`): the lexer and parser on any source, and the
//! evaluator, its built-ins and helpers, the JSON scanner (dot, `jsonParse`) and the regex
//! matcher (`match*`) on any document.
//!
//! Input: one byte of flags, then the template source up to the first 0x00, then the document
//! dot is (raw bytes; the fixture below when empty). Flag bit 0 gives `httpGet` a transport that
//! returns the document itself (so `jsonParse` reads fuzzed bytes); bit 1 renders twice, through
//! the per-thread cache.
//!
//! Invariants: no panic; a parse error names a position inside the source (line >= 1, column
//! >= 1); rendering stops at 4 KiB of output (a failed rendering leaves no output, and the
//! output never exceeds the bound); the same
//! template and document render the same twice. Without a transport (a container's
//! metadata) `httpGet` has nothing to send a request with: it can only fail. Time is
//! bounded by the evaluator's limits (64 levels, 10,000 iterations, 4 KiB) and the linear
//! scanner and matcher: tests/fuzz.sh runs with -timeout=10.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::template::{cached, Template, MAX_OUTPUT};

const FIXTURE: &[u8] = br#"{"Id":"e20f9c1a7656","Name":"/web-1","Created":"2024-01-02T03:04:05Z",
"Config":{"Hostname":"e20f","Env":["A=1","SERVICE_80_NAME=x"],"Cmd":null,
"Labels":{"env":"prod","a.b":"c"},"ExposedPorts":{"80/tcp":{}}},
"State":{"Running":true,"Pid":42},"HostConfig":{"NetworkMode":"bridge"},
"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.5"}},
"Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}}}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (src, doc) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(src) = std::str::from_utf8(src) else {
        return;
    };
    let doc = if doc.is_empty() { FIXTURE } else { doc };
    let t = match Template::parse(src) {
        Ok(t) => t,
        Err(e) => {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
            assert!(e.line <= src.lines().count().max(1) + 1, "{e}");
            return;
        }
    };
    let render = |t: &Template| {
        let mut out = String::new();
        let r = if flags & 1 == 1 {
            let mut fetch = |_: &str| doc.to_vec();
            t.render(doc, Some(&mut fetch), &mut out)
        } else {
            t.render(doc, None, &mut out)
        };
        assert!(out.len() <= MAX_OUTPUT, "{} bytes", out.len());
        // A failed rendering leaves nothing behind.
        assert!(r.is_ok() || out.is_empty());
        (r, out)
    };
    let first = render(&t);
    if flags & 2 == 2 {
        let parsed = cached(src);
        let again = render(parsed.as_ref().as_ref().expect("parsed once already"));
        assert_eq!(first, again);
    }
});
