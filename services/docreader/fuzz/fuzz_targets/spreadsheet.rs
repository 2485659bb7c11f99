#![no_main]
//! Any bytes as an xlsx, xls or ods workbook (the first byte picks which): a document or
//! an error, never a panic or a hang.

use docreader::parse::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // The spreadsheet library panics on some malformed files and parse() turns that
        // into an error; only panics from anywhere else are findings.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("calamine")) {
                abort(info);
            }
        }));
    },
    |data: &[u8]| {
        let Some((which, rest)) = data.split_first() else { return };
        let name = ["book.xlsx", "book.xls", "book.ods"][usize::from(*which) % 3];
        let _ = parse(rest, name, "", &Limits::with_max_bytes(1 << 20));
    }
);
