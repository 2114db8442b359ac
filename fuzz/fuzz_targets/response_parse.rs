//! `Response::parse` on arbitrary bytes: never panics, round-trips, and the status
//! word's enum view is lossless.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match apdu::Response::parse(data) {
        Ok(resp) => {
            assert_eq!(resp.to_bytes(), data);
            assert_eq!(apdu::StatusWord::from(resp.sw.status()), resp.sw);
            let _ = resp.sw.to_string();
        }
        Err(_) => assert!(data.len() < 2),
    }
});
