//! The virtual card answers any sequence of C-APDUs with a well-formed R-APDU and never
//! panics. Input: APDUs separated by their 1-byte length prefix.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut card = card::VirtualCard::new(card::CardConfig::default());
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (apdu, next) = tail.split_at(n);
        let r = card.transmit(apdu);
        assert!(r.len() >= 2, "every answer ends with a status word");
        rest = next;
    }
});
