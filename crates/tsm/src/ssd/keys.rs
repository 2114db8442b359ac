//! SSD key sets in the platforms' key stores, and their transport from the CI's key store
//! to the AP's: the `kms` key-set API ([`kms::KeySetStore`], software keystore or PKCS#11
//! token), re-exported here. See [`kms::keyset`] for the transport scheme (ECDH P-256
//! ephemeral-static, ANSI X9.63 KDF, AES key wrap) and which key material leaves an HSM.

pub use kms::{KeySetInfo, KeySetStore, TransportPublicKey, WrappedKeySet};

use gp::aid::Aid;
use sha2::{Digest, Sha256};

/// A key-store label for a new SSD key set: `ssd-` ‖ 16 hex digits of SHA-256(card number
/// ‖ `/` ‖ AID) ‖ `-` ‖ KVN ‖ `-` ‖ 8 random hex digits (unique per key version, within
/// the 64 characters of [`kms::validate_key_set_label`], and naming neither the card nor
/// the AID in an HSM's object list).
pub(crate) fn new_label(card_number: &str, aid: &Aid, kvn: u8) -> String {
    let mut h = Sha256::new();
    h.update(card_number.as_bytes());
    h.update(b"/");
    h.update(aid.as_bytes());
    let digest = h.finalize();
    let mut r = [0u8; 4];
    if getrandom::fill(&mut r).is_err() {
        r.copy_from_slice(&crate::model::now_ms().to_be_bytes()[4..]);
    }
    format!(
        "ssd-{}-{kvn:02X}-{}",
        apdu::hex(&digest[..8]),
        apdu::hex(&r)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_valid_and_unique() {
        let aid = Aid::new(&[0xA0, 0, 0, 1, 0x51, 0xBA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap();
        let a = new_label("12345678901234567890", &aid, 0x30);
        let b = new_label("12345678901234567890", &aid, 0x30);
        assert_ne!(a, b);
        kms::validate_key_set_label(&a).unwrap();
        kms::validate_key_set_label(&format!("{a}-i")).unwrap();
        assert!(a.starts_with("ssd-") && a.contains("-30-"), "{a}");
    }
}
