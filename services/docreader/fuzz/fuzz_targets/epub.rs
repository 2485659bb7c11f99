#![no_main]
//! Any bytes given as `book.epub`: the parser returns a document or an error, never panics or hangs.

use docreader::parse::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, "book.epub", "", &Limits::with_max_bytes(1 << 20));
});
