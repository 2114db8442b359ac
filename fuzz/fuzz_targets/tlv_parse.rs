//! BER-TLV parsing on arbitrary bytes: never panics; strict and padding-skipping
//! parsers, the zero-copy walk of every nested level and path lookup all terminate,
//! and what parses re-encodes to a sequence that parses to the same objects.
#![no_main]
#![forbid(unsafe_code)]

use apdu::tlv::{self, ParseOptions, Tag, TlvRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for options in [ParseOptions::STRICT, ParseOptions::SKIP_PADDING] {
        if let Ok(objects) = tlv::parse_all_with(data, options) {
            let encoded = tlv::encode_all(&objects);
            assert!(encoded.len() <= data.len());
            assert_eq!(
                tlv::parse_all(&encoded).expect("re-encoding parses"),
                objects
            );
        }
    }
    // Walk every constructed object (iteratively: nesting depth is attacker-chosen).
    let mut stack: Vec<TlvRef<'_>> = tlv::iter(data).filter_map(Result::ok).collect();
    while let Some(t) = stack.pop() {
        if let Ok(children) = t.children() {
            stack.extend(children.filter_map(Result::ok));
        }
    }
    let _ = tlv::find_in(data, &[Tag::new(0x6F), Tag::new(0xA5), Tag::new(0xBF0C)]);
    let _ = tlv::read_length(data);
    let _ = Tag::parse(data);
});
