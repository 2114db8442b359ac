//! Card numbers → key diversification data, and the derivation scheme.

use crate::Error;
use scp::{Diversification, Key, KeyKind, StaticKeys};

/// The key diversification data (KDD) Cardwright writes to a card for a card number: the
/// number in packed BCD, right-aligned in 10 bytes, padded on the left with `F` nibbles.
///
/// The KDD is the first field of the INITIALIZE UPDATE response (GP 2.3.1 §E.5.1.6, Table
/// E-12; Amendment D §7.1.1.6); personalisation puts this value there, so a host that knows
/// only the base key and the card's KDD (`cardwright card --key BASE --kdf emv|kdf3`)
/// reaches the same card keys as [`crate::KeyStore::derive_card_keys`].
///
/// * `"1234"` → `FF FF FF FF FF FF FF FF 12 34`
/// * `"123"` → `FF FF FF FF FF FF FF FF F1 23`
/// * `"00010203040506070809"` → `00 01 02 03 04 05 06 07 08 09`
///
/// The mapping is one-to-one for numbers of 1 to 20 decimal digits (leading zeros count:
/// `"0123"` and `"123"` differ). Anything else (empty, longer, a non-digit) is refused.
///
/// **EMV caveat.** EMV CPG 2.1 diversification uses only the six rightmost KDD bytes
/// (EMV CPS v1.1 §5.4.2 / GP's "K4..K9"), i.e. the **last 12 digits** of the card number:
/// within one card category (one DES base key) card numbers must differ in their last 12
/// digits, or two cards get the same keys. KDF3 (AES) uses all 10 bytes.
pub fn kdd_for_card_number(card_number: &str) -> Result<[u8; 10], Error> {
    let digits = card_number.as_bytes();
    if digits.is_empty() {
        return Err(Error::BadCardNumber("empty".into()));
    }
    if digits.len() > 20 {
        return Err(Error::BadCardNumber(format!(
            "{} digits, at most 20 fit in a 10-byte KDD",
            digits.len()
        )));
    }
    if let Some(pos) = digits.iter().position(|c| !c.is_ascii_digit()) {
        return Err(Error::BadCardNumber(format!(
            "character {} is not a decimal digit",
            pos + 1
        )));
    }
    let mut nibbles = [0x0Fu8; 20];
    let start = 20 - digits.len();
    for (slot, d) in nibbles[start..].iter_mut().zip(digits) {
        *slot = d - b'0';
    }
    let mut kdd = [0u8; 10];
    for (i, byte) in kdd.iter_mut().enumerate() {
        *byte = (nibbles[2 * i] << 4) | nibbles[2 * i + 1];
    }
    Ok(kdd)
}

/// The card number a KDD made by [`kdd_for_card_number`] encodes, or `None` if the bytes
/// are not such a KDD.
pub fn card_number_from_kdd(kdd: &[u8; 10]) -> Option<String> {
    let mut out = String::with_capacity(20);
    let mut padding = true;
    for b in kdd {
        for n in [b >> 4, b & 0x0F] {
            match (padding, n) {
                (true, 0x0F) => {}
                (_, 0..=9) => {
                    padding = false;
                    out.push(char::from(b'0' + n));
                }
                _ => return None,
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The diversification applied to a base key of this kind: EMV CPG 2.1 for 3DES
/// ([`Diversification::Emv`]), GlobalPlatformPro's KDF3 for AES ([`Diversification::Kdf3`]).
pub fn diversification_for(kind: KeyKind) -> Diversification {
    match kind {
        KeyKind::Des3 => Diversification::Emv,
        KeyKind::Aes => Diversification::Kdf3,
    }
}

/// The software derivation: the base key as ENC = MAC = DEK master, diversified with the KDD
/// by [`diversification_for`] its kind. This is the reference every backend must match.
pub fn derive_in_software(base: &Key, kdd: &[u8; 10]) -> Result<StaticKeys, Error> {
    let master = StaticKeys::same(base.clone());
    Ok(diversification_for(base.kind()).apply(&master, kdd)?)
}

/// The 16-byte EMV CPG 2.1 derivation input for key purpose `k` (1 ENC, 2 MAC, 3 DEK):
/// `K4..K9 F0 k ‖ K4..K9 0F k`, encrypted with 3DES-ECB under the base key.
pub(crate) fn emv_block(kdd: &[u8; 10], k: u8) -> [u8; 16] {
    let mut data = [0u8; 16];
    data[..6].copy_from_slice(&kdd[4..10]);
    data[6] = 0xF0;
    data[7] = k;
    data[8..14].copy_from_slice(&kdd[4..10]);
    data[14] = 0x0F;
    data[15] = k;
    data
}

/// The KDF3 PRF input for block `i` and key purpose `k`: the SP 800-108 counter-mode input
/// `i ‖ 00 00 00 ‖ k ‖ 00 ‖ KDD`, as GlobalPlatformPro builds it; CMAC-AES under the base key.
pub(crate) fn kdf3_block(kdd: &[u8; 10], i: u8, k: u8) -> [u8; 16] {
    let mut data = [0u8; 16];
    data[0] = i;
    data[4] = k;
    data[6..].copy_from_slice(kdd);
    data
}

/// The key version number (KVN) of the key set derived from base key version `version`,
/// for a category whose blank cards carry key set `initial_kvn`.
///
/// GlobalPlatform KVNs are `01`-`7F` (GP 2.3.1 §11.1.8); the initial KVN is kept for the
/// initial keys, so the other 126 values are used in turn: version 1 → the first free
/// value from `01`, and so on, wrapping after 126 versions. Consecutive versions never share
/// a KVN, and a derived key set never shares the initial one's, so the Key Information
/// Template (GET DATA `E0`, readable without authentication) tells which key set a card
/// carries before any authentication is attempted.
pub fn kvn_for_version(version: u32, initial_kvn: u8) -> u8 {
    let idx = (version.max(1) - 1) % 126;
    // idx < 126, so it fits a u8.
    let kvn = idx as u8 + 1;
    if (1..=0x7F).contains(&initial_kvn) && kvn >= initial_kvn {
        kvn + 1
    } else {
        kvn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(
            kdd_for_card_number("1234").unwrap(),
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x12, 0x34]
        );
        assert_eq!(
            kdd_for_card_number("123").unwrap(),
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF1, 0x23]
        );
        assert_eq!(
            kdd_for_card_number("00010203040506070809").unwrap(),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
        assert_ne!(
            kdd_for_card_number("0123").unwrap(),
            kdd_for_card_number("123").unwrap()
        );
    }

    #[test]
    fn rejects() {
        assert!(kdd_for_card_number("").is_err());
        assert!(kdd_for_card_number("123456789012345678901").is_err());
        let e = kdd_for_card_number("4111-1111").unwrap_err().to_string();
        assert!(e.contains("character 5"), "{e}");
        assert!(!e.contains("4111"), "{e}");
        assert!(kdd_for_card_number("١٢٣").is_err()); // non-ASCII digits
    }

    #[test]
    fn emv_and_kdf3_blocks_match_scp() {
        // The blocks the PKCS#11 backend sends to the token must be what scp encrypts.
        let kdd = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(
            apdu::hex(&emv_block(&kdd, 2)),
            "040506070809F0020405060708090F02"
        );
        assert_eq!(
            apdu::hex(&kdf3_block(&kdd, 1, 3)),
            "01000000030000010203040506070809"
        );
    }

    proptest! {
        #[test]
        fn round_trip(n in "[0-9]{1,20}") {
            let kdd = kdd_for_card_number(&n).unwrap();
            prop_assert_eq!(card_number_from_kdd(&kdd), Some(n));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = kdd_for_card_number(&s);
        }

        #[test]
        fn decoding_never_panics(kdd in any::<[u8; 10]>()) {
            if let Some(n) = card_number_from_kdd(&kdd) {
                prop_assert_eq!(kdd_for_card_number(&n).unwrap(), kdd);
            }
        }
    }

    #[test]
    fn kvn_mapping() {
        assert_eq!(kvn_for_version(1, 0x30), 0x01);
        assert_eq!(kvn_for_version(0x2F, 0x30), 0x2F);
        assert_eq!(kvn_for_version(0x30, 0x30), 0x31);
        assert_eq!(kvn_for_version(126, 0x30), 0x7F);
        assert_eq!(kvn_for_version(127, 0x30), 0x01);
        assert_eq!(kvn_for_version(1, 0x01), 0x02);
        assert_eq!(kvn_for_version(126, 0x7F), 0x7E);
        for initial in 1..=0x7Fu8 {
            let mut seen = std::collections::HashSet::new();
            for v in 1..=126u32 {
                let k = kvn_for_version(v, initial);
                assert!((1..=0x7F).contains(&k));
                assert_ne!(k, initial);
                assert!(seen.insert(k));
                assert_ne!(k, kvn_for_version(v + 1, initial));
            }
        }
    }
}
