//! The HTTP response decoder on whole responses (head, then a chunked, Content-Length or
//! close-delimited body, possibly several on one keep-alive connection).
//!
//! Input: one byte `n`, then `n % 32` bytes that say where to cut, then the response bytes.
//! Decoding the bytes whole, cut there and byte by byte must give the same heads, body bytes,
//! ends and error; `feed` must always make progress (see `harness::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrator_fuzz::harness::{decode_all_ways, Src};

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let n = usize::from(src.byte() % 32);
    let spec = src.take(n);
    decode_all_ways(src.rest(), spec);
});
