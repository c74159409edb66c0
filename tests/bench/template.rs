//! What one tag template costs (spec/dropin.md Decisions T1-T6): a typical `-tags` template
//! parsed once, then rendered over a real inspect document (Docker 28.5's, from
//! tests/data/) many times; time and heap allocations per rendering, counted by the
//! benchmark's global allocator. Pure CPU: no engine, no registry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use registrator::template::Template;
use serde::Serialize;

/// A `-tags` as a gliderlabs-master user writes one: a label, the hostname, a helper.
pub const TYPICAL: &str = r#"team-{{index .Config.Labels "com.example.team"}},host-{{.Config.Hostname}},{{strSlice .ID 0 12}}"#;
const DOC: &[u8] = include_bytes!("../data/inspect-engine-28.5.json");
const ROUNDS: u32 = 100_000;

/// Counts every allocation the benchmark makes (wraps the system allocator).
pub struct Counting;
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);
pub static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(n as u64, Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

#[derive(Serialize, Debug)]
pub struct Cost {
    pub template: &'static str,
    pub rendered: String,
    pub parse_us: f64,
    pub render_ns: f64,
    pub allocs_per_render: f64,
    pub bytes_per_render: f64,
    /// The same with the output buffer kept between renderings (cleared, not freed).
    pub allocs_per_render_reused: f64,
}

/// JSON without the whitespace between tokens.
fn compact(json: &[u8]) -> Vec<u8> {
    let (mut out, mut in_str, mut esc) = (Vec::with_capacity(json.len()), false, false);
    for &c in json {
        if in_str {
            in_str = esc || c != b'"';
            esc = !esc && c == b'\\';
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_str = c == b'"';
        }
        out.push(c);
    }
    out
}

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let (a, b) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let out = f();
    let (a2, b2) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    (out, a2 - a, b2 - b)
}

/// Runs on the benchmark's main thread before any other thread starts, so the counters see
/// only this.
pub fn measure() -> Result<Cost, String> {
    // As the engine sends it: compact (the file is indented for reading).
    let doc = compact(DOC);
    let doc = doc.as_slice();
    let t0 = Instant::now();
    let t = Template::parse(TYPICAL).map_err(|e| e.to_string())?;
    let parse_us = t0.elapsed().as_secs_f64() * 1e6;
    let mut rendered = String::new();
    t.render(doc, None, &mut rendered)?;
    let ((), allocs, bytes) = counted(|| {
        let t0 = Instant::now();
        for _ in 0..ROUNDS {
            let mut out = String::new();
            let _ = t.render(doc, None, &mut out);
            std::hint::black_box(&out);
        }
        let _ = t0;
    });
    let t0 = Instant::now();
    for _ in 0..ROUNDS {
        let mut out = String::new();
        let _ = t.render(std::hint::black_box(doc), None, &mut out);
        std::hint::black_box(&out);
    }
    let render_ns = t0.elapsed().as_secs_f64() * 1e9 / f64::from(ROUNDS);
    let ((), reused, _) = counted(|| {
        let mut out = String::with_capacity(256);
        for _ in 0..ROUNDS {
            out.clear();
            let _ = t.render(doc, None, &mut out);
        }
    });
    let per = |n: u64| n as f64 / f64::from(ROUNDS);
    Ok(Cost {
        template: TYPICAL,
        rendered,
        parse_us,
        render_ns,
        allocs_per_render: per(allocs),
        bytes_per_render: per(bytes),
        allocs_per_render_reused: per(reused),
    })
}
