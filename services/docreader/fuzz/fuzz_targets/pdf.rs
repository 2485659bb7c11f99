#![no_main]
//! Any bytes given as `doc.pdf`: the parser returns a document or an error, never panics or hangs.

use docreader::parse::{Limits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // The PDF library panics on some malformed files and parse() turns that into an
        // error; only panics from anywhere else are findings.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let library = info.location().is_some_and(|l| l.file().contains("pdf-extract") || l.file().contains("lopdf"));
            if !library {
                abort(info);
            }
        }));
    },
    |data: &[u8]| {
        let _ = parse(data, "doc.pdf", "", &Limits::with_max_bytes(1 << 20));
    }
);
