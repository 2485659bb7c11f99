//! Throughput of the parsers on one thread: parses each file of a corpus folder
//! repeatedly for at least MIN_SECONDS and prints JSON seconds per run, as
//! services/docreader/bench/reference.py does for the Python parsers.
//! Usage: bench DIR MIN_SECONDS   (run by `cargo xtask bench`)

use std::time::Instant;

use docreader::parse::{Limits, parse};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, min_seconds) = (&args[1], args[2].parse::<f64>().expect("MIN_SECONDS"));
    let limits = Limits::with_max_bytes(256 << 20);
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("corpus dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    let mut results = Vec::new();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let format = name.rsplit('.').next().unwrap_or("").to_string();
        let data = std::fs::read(&path).unwrap();
        let doc = parse(&data, &name, "", &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!doc.markdown.is_empty(), "{name}: no text");
        let start = Instant::now();
        let mut runs = 0u32;
        loop {
            std::hint::black_box(parse(&data, &name, "", &limits).unwrap());
            runs += 1;
            let elapsed = start.elapsed().as_secs_f64();
            if elapsed >= min_seconds && runs >= 3 {
                results.push(format!(
                    "\"{format}\": {{\"bytes\": {}, \"seconds\": {}, \"runs\": {runs}}}",
                    data.len(),
                    elapsed / f64::from(runs)
                ));
                break;
            }
        }
    }
    println!("{{{}}}", results.join(", "));
}
