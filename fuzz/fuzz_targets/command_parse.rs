//! `Command::parse` on arbitrary bytes: never panics, and whatever parses re-encodes
//! to an equivalent command that is never longer (an extended encoding of values that
//! fit the short form, such as Le `000100`, is accepted but re-encoded short).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = apdu::Command::parse(data) {
        let bytes = cmd.to_bytes().expect("a parsed command encodes");
        assert!(bytes.len() <= data.len(), "re-encoding is longer");
        assert_eq!(
            apdu::Command::parse(&bytes).as_ref(),
            Ok(&cmd),
            "re-encoding differs"
        );
        if bytes.len() == data.len() {
            assert_eq!(bytes, data, "same length, different bytes");
        }
        // Chaining never loses or reorders data.
        let parts = cmd.chain(1 + data.first().copied().unwrap_or(0) as usize);
        let joined: Vec<u8> = parts.iter().flat_map(|c| c.data.iter().copied()).collect();
        assert_eq!(joined, cmd.data);
    }
});
