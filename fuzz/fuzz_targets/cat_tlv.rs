//! `fuzzing::cat_tlv` (crates/fuzzing): its documentation says what it checks.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::cat_tlv(data));
