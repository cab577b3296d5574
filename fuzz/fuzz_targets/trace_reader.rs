//! Arbitrary bytes as a trace: open it, load its definitions, iterate every event and
//! every scan record, and (with bit 1 of the first byte) run the report and leak analysis
//! over it. Nothing may panic, hang or allocate without bound.
//!
//! The first byte of an input is a mode, the rest is the file. Bit 0: refresh the
//! header and chunk checksums before reading (`memlens_trace::refresh_checksums`), so
//! that mutations reach the record decoders instead of failing the checksum. Bit 1: also
//! analyse. The seeds (`fuzz/corpus/trace_reader/*.trace`) are traces written by the
//! recorder behind a mode byte of 3.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memlens_analysis::leaks::Resolution;
use memlens_analysis::report::{Report, ReportOptions};
use memlens_trace::reader::TraceReader;
use std::path::PathBuf;

fn scratch() -> PathBuf {
    let dir = std::env::var_os("MEMLENS_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("memlens-fuzz-{}.trace", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        memlens_trace::refresh_checksums(&mut bytes);
    }
    let path = scratch();
    std::fs::write(&path, &bytes).expect("cannot write the fuzz input file");
    let Ok(reader) = TraceReader::open(&path) else {
        return;
    };
    let _ = (reader.truncation(), reader.header(), reader.has_scan());
    let _ = (
        reader.last_event_ts(),
        reader.heap_event_span(),
        reader.event_bytes(),
    );
    let _ = reader.metadata();
    for e in reader.events() {
        if e.is_err() {
            break;
        }
    }
    for s in reader.scan() {
        if s.is_err() {
            break;
        }
    }
    if mode & 2 != 0 {
        let opts = ReportOptions {
            leaks: Some(Resolution::High),
            heap_errors: true,
            ..Default::default()
        };
        let _ = Report::build(&reader, &opts);
    }
});
