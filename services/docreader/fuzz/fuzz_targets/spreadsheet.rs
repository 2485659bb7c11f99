#![no_main]
//! Any bytes as an xlsx, xls or ods workbook (the first byte picks which): a document or
//! an error, never a panic or a hang.

use docreader::parse::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let name = ["book.xlsx", "book.xls", "book.ods"][usize::from(*which) % 3];
    let _ = parse(rest, name, "", &Limits::with_max_bytes(1 << 20));
});
