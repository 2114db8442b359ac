//! `fuzzing::ota_response_packet` (crates/fuzzing): its documentation says what it checks.
#![no_main]
#![forbid(unsafe_code)]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::ota_response_packet(data));
