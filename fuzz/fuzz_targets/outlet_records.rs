//! `fuzzing::outlet_records` (crates/fuzzing): its documentation says what it checks.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::outlet_records(data));
