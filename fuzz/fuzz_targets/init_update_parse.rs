//! INITIALIZE UPDATE responses and PUT KEY key data: never panic; what parses re-encodes.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(iu) = scp::InitUpdateResponse::parse(data) {
        assert_eq!(scp::InitUpdateResponse::parse(&iu.to_bytes()).ok(), Some(iu));
    }
    let _ = scp::put_key::parse_key_set_data(data);
});
