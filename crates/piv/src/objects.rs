//! PIV data objects (SP 800-73-4 Part 1 §3, Table 3) and the YubiKey objects.
//!
//! Objects are stored as the complete value the host wrote with PUT DATA (the
//! `53` container), and returned verbatim by GET DATA. The Discovery Object is
//! built by the card and cannot be written.

use apdu::tlv::{self, Tag};

/// Card Capability Container.
pub const CCC: u32 = 0x5FC107;
/// Card Holder Unique Identifier.
pub const CHUID: u32 = 0x5FC102;
/// X.509 certificate for PIV Authentication (key 9A).
pub const CERT_9A: u32 = 0x5FC105;
/// X.509 certificate for Digital Signature (key 9C).
pub const CERT_9C: u32 = 0x5FC10A;
/// X.509 certificate for Key Management (key 9D).
pub const CERT_9D: u32 = 0x5FC10B;
/// X.509 certificate for Card Authentication (key 9E).
pub const CERT_9E: u32 = 0x5FC101;
/// Cardholder fingerprints.
pub const FINGERPRINTS: u32 = 0x5FC103;
/// Security object.
pub const SECURITY_OBJECT: u32 = 0x5FC106;
/// Cardholder facial image.
pub const FACIAL_IMAGE: u32 = 0x5FC108;
/// Printed information.
pub const PRINTED_INFO: u32 = 0x5FC109;
/// Key history object.
pub const KEY_HISTORY: u32 = 0x5FC10C;
/// Cardholder iris images.
pub const IRIS: u32 = 0x5FC121;
/// Pairing code reference data container.
pub const PAIRING_CODE: u32 = 0x5FC123;
/// Discovery object (read only, one-byte tag).
pub const DISCOVERY: u32 = 0x7E;
/// Biometric information templates group template (two-byte tag).
pub const BITGT: u32 = 0x7F61;
/// YubiKey PIV administrative data (used by yubico-piv-tool for PIN-derived keys).
pub const YUBICO_ADMIN_DATA: u32 = 0x5FFF00;

/// Whether `tag` names an object that PUT DATA may write: the PIV objects
/// `5FC101`..`5FC123` (Part 1 Table 3), `7F61`, and the vendor range `5FFFxx`.
pub fn is_writable(tag: u32) -> bool {
    matches!(tag, 0x5FC101..=0x5FC123 | BITGT | 0x5FFF00..=0x5FFFFF)
}

/// Whether reading `tag` requires the PIN (Part 1 Table 3 access rule "PIN").
pub fn read_needs_pin(tag: u32) -> bool {
    matches!(
        tag,
        FINGERPRINTS | FACIAL_IMAGE | PRINTED_INFO | IRIS | PAIRING_CODE
    )
}

/// The tag of the container GET DATA returns for `tag`: `7E` for Discovery,
/// `7F61` for BITGT, `53` for everything else (Part 2 §3.1.2).
pub fn container_tag(tag: u32) -> u32 {
    match tag {
        DISCOVERY | BITGT => tag,
        _ => 0x53,
    }
}

/// The Discovery Object (Part 1 §3.3.2, Table 18): the PIV AID and a PIN
/// usage policy of "PIV Card Application PIN only" (`40 00`).
pub fn discovery(aid: &[u8]) -> Vec<u8> {
    let mut body = tlv::encode(Tag::new(0x4F), aid);
    body.extend(tlv::encode(Tag::new(0x5F2F), &[0x40, 0x00]));
    tlv::encode(Tag::new(DISCOVERY), &body)
}

/// Encodes a FASC-N (TIG SCEPACS §6): forty 5-bit characters, each four data
/// bits least significant first plus an odd parity bit, framed by start sentinel,
/// field separators and end sentinel, followed by the longitudinal redundancy
/// character. `digits` holds the 32 numeric digits: agency code (4), system
/// code (4), credential number (6), credential series (1), individual credential
/// issue (1), person identifier (10), organizational category (1), organizational
/// identifier (4), person/organization association category (1).
pub fn fasc_n(digits: &[u8; 32]) -> [u8; 25] {
    const SS: u8 = 0b1011;
    const FS: u8 = 0b1101;
    const ES: u8 = 0b1111;
    let d = |i: usize| digits[i] & 0x0F;
    let mut chars = Vec::with_capacity(40);
    chars.push(SS);
    let fields: [(usize, usize); 6] = [(0, 4), (4, 8), (8, 14), (14, 15), (15, 16), (16, 26)];
    for (n, (a, b)) in fields.iter().enumerate() {
        chars.extend((*a..*b).map(d));
        // FS after agency, system, credential, series and issue; none before PI.
        if n < 5 {
            chars.push(FS);
        }
    }
    chars.extend((26..32).map(d));
    chars.push(ES);
    let lrc = chars.iter().fold(0u8, |acc, c| acc ^ c);
    chars.push(lrc);
    debug_assert_eq!(chars.len(), 40);

    let mut out = [0u8; 25];
    let mut bit = 0usize;
    for c in chars {
        let parity = u8::from(c.count_ones() % 2 == 0);
        // b1 (least significant) first, then b2, b4, b8, then parity.
        let bits = [c & 1, (c >> 1) & 1, (c >> 2) & 1, (c >> 3) & 1, parity];
        for b in bits {
            if b == 1 {
                out[bit / 8] |= 0x80 >> (bit % 8);
            }
            bit += 1;
        }
    }
    out
}

/// A CHUID (Part 1 §3.1.2, Table 9) for a PIV-compatible card: a FASC-N with
/// agency code 9999 (non-federal issuer), the given GUID, an expiration date and
/// an empty issuer signature.
pub fn default_chuid(serial: u32, guid: &[u8; 16]) -> Vec<u8> {
    let mut digits = [9u8; 32];
    // Credential number: the low six decimal digits of the card serial.
    let cred = serial % 1_000_000;
    for (i, slot) in digits[8..14].iter_mut().enumerate() {
        *slot = ((cred / 10u32.pow(5 - i as u32)) % 10) as u8;
    }
    let mut body = tlv::encode(Tag::new(0x30), &fasc_n(&digits));
    body.extend(tlv::encode(Tag::new(0x34), guid));
    body.extend(tlv::encode(Tag::new(0x35), b"20501231"));
    body.extend(tlv::encode(Tag::new(0x3E), &[]));
    body.extend(tlv::encode(Tag::new(0xFE), &[]));
    tlv::encode(Tag::new(0x53), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undo [`fasc_n`]: 40 characters, checking every parity bit.
    fn decode(f: &[u8; 25]) -> Vec<u8> {
        (0..40)
            .map(|i| {
                let bit = |j: usize| (f[(i * 5 + j) / 8] >> (7 - (i * 5 + j) % 8)) & 1;
                let c = bit(0) | bit(1) << 1 | bit(2) << 2 | bit(3) << 3;
                assert_eq!(
                    (c.count_ones() + u32::from(bit(4))) % 2,
                    1,
                    "odd parity of char {i}"
                );
                c
            })
            .collect()
    }

    #[test]
    fn fasc_n_starts_like_a_non_federal_credential() {
        // OpenSC card-piv.c (piv_get_serial_nr_from_CHUI) recognises agency code
        // 9999 by the leading bytes D4 E7 39 and a set top bit in the fourth byte.
        let f = fasc_n(&[9; 32]);
        assert_eq!(f[..3], [0xD4, 0xE7, 0x39]);
        assert_eq!(f[3] | 0x7F, 0xFF);
        let chars = decode(&f);
        assert_eq!(chars[0], 0b1011);
        assert_eq!(chars[38], 0b1111);
        assert_eq!(chars[..39].iter().fold(0, |a, c| a ^ c), chars[39], "LRC");
    }

    #[test]
    fn chuid_is_well_formed() {
        let c = default_chuid(1234567, &[0xAB; 16]);
        let (outer, rest) = tlv::TlvRef::parse_one(&c).unwrap();
        assert!(rest.is_empty());
        assert_eq!(outer.tag(), Tag::new(0x53));
        let inner = tlv::parse_all_ref(outer.value()).unwrap();
        let tags: Vec<u32> = inner.iter().map(|t| t.tag().value()).collect();
        assert_eq!(tags, [0x30, 0x34, 0x35, 0x3E, 0xFE]);
        assert_eq!(
            tlv::find_value(&inner, Tag::new(0x34)),
            Some(&[0xAB; 16][..])
        );
        let chars = decode(
            tlv::find_value(&inner, Tag::new(0x30))
                .unwrap()
                .try_into()
                .unwrap(),
        );
        // Credential number field follows SS, 4 digits, FS, 4 digits, FS.
        assert_eq!(chars[11..17], [2, 3, 4, 5, 6, 7]);
    }
}
