//! `fuzzing::init_update_parse` (crates/fuzzing): its documentation says what it checks.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::init_update_parse(data));
