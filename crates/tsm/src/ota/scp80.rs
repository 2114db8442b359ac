//! A card's SCP80 key set (`docs/OTA.md`, "SCP80 keys"): derived from the card category's
//! base key like its SCP02/SCP03 keys, but from a domain-separated diversification value,
//! so that knowing one key set tells nothing about the other.
//!
//! `KDD_SCP80 = SHA-256("Cardwright SCP80" ‖ KDD)[..10]`, then
//! `kms::KeyStore::derive_for_kdd(category, version, KDD_SCP80)`: its ENC key is the KIc
//! key, its MAC key the KID key, its DEK the DEK (key 3 of the set, GP 2.3.1 §11.1.8).

use ota::packet::{Algorithm, DesMode, Key, KeySet, Kic, Kid};
use scp::{KeyKind, StaticKeys};
use sha2::{Digest, Sha256};

/// The domain separation label hashed in front of the KDD.
pub const SCP80_LABEL: &[u8] = b"Cardwright SCP80";

/// The SCP80 key set version a card gets unless told otherwise.
pub const DEFAULT_KVN: u8 = 1;

/// The versions an SCP80 key set may have (GP UICC Configuration §4.2: the KVN is the high
/// nibble of KIc and KID).
pub const SCP80_KVNS: std::ops::RangeInclusive<u8> = 0x01..=0x0F;

/// The diversification data of a card's SCP80 key set:
/// `SHA-256("Cardwright SCP80" ‖ kdd)[..10]`.
pub fn kdd_scp80(kdd: &[u8; 10]) -> [u8; 10] {
    let mut h = Sha256::new();
    h.update(SCP80_LABEL);
    h.update(kdd);
    let d = h.finalize();
    let mut out = [0u8; 10];
    out.copy_from_slice(&d[..10]);
    out
}

/// Derives a card's SCP80 key set from the base key version `version` of the key-store
/// category `kms_category` and the card's KDD.
pub fn derive_scp80_keys(
    keys: &dyn kms::KeyStore,
    kms_category: &str,
    version: u32,
    kdd: &[u8; 10],
) -> Result<StaticKeys, kms::Error> {
    keys.derive_for_kdd(kms_category, version, &kdd_scp80(kdd))
}

/// An SCP80 key set ready for the `ota` codecs: KIc/KID bytes and the keys. `Debug`
/// shows no key bytes.
#[derive(Clone, Debug)]
pub struct Scp80KeySet {
    /// The key set version (1–15).
    pub kvn: u8,
    /// KIc: key version and ciphering algorithm.
    pub kic: Kic,
    /// KID: key version and CC algorithm.
    pub kid: Kid,
    /// The ciphering and checksum keys.
    pub keys: KeySet,
    /// The cipher block size (8 for 3DES, 16 for AES), for sizing packets.
    pub block: usize,
}

impl Scp80KeySet {
    /// The key set for static keys: AES keys give AES-CBC and AES-CMAC; 3DES keys 3DES
    /// outer-CBC and the 3DES CBC-MAC, two- or three-key by their length.
    pub fn new(kvn: u8, keys: &StaticKeys) -> Self {
        let (algorithm, block) = match keys.enc.kind() {
            KeyKind::Aes => (Algorithm::Aes, 16),
            KeyKind::Des3 if keys.enc.len() == 24 => (Algorithm::Des(DesMode::Tdes3Key), 8),
            KeyKind::Des3 => (Algorithm::Des(DesMode::Tdes2Key), 8),
        };
        Self {
            kvn,
            kic: Kic::new(kvn, algorithm),
            kid: Kid::for_cc(kvn, algorithm),
            keys: KeySet::new(
                Key::new(keys.enc.expose().to_vec()),
                Key::new(keys.mac.expose().to_vec()),
            ),
            block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdd_vector() {
        // kms::kdd_for_card_number("1234") = FFFFFFFFFFFFFFFF1234.
        let kdd = kms::kdd_for_card_number("1234").unwrap();
        assert_eq!(
            apdu::hex(&kdd_scp80(&kdd)),
            "85F60E507092E12BC5F3",
            "SHA-256(\"Cardwright SCP80\" || FFFFFFFFFFFFFFFF1234)[..10]"
        );
    }

    #[test]
    fn derived_apart_from_the_scp03_keys() {
        use kms::KeyStore;
        let dir = tempfile::tempdir().unwrap();
        let store = kms::SoftwareKeyStore::create(
            dir.path().join("keys.json"),
            kms::MasterKey::generate().unwrap(),
        )
        .unwrap();
        let info = store
            .generate_base_key("acme/sim", KeyKind::Aes, 16, None)
            .unwrap();
        let kdd = kms::kdd_for_card_number("8900000000000000001").unwrap();
        let ota = derive_scp80_keys(&store, "acme/sim", info.version, &kdd).unwrap();
        let scp03 = store
            .derive_for_kdd("acme/sim", info.version, &kdd)
            .unwrap();
        assert_ne!(ota.enc, scp03.enc);
        assert_eq!(
            ota,
            store
                .derive_for_kdd("acme/sim", info.version, &kdd_scp80(&kdd))
                .unwrap()
        );
        let set = Scp80KeySet::new(1, &ota);
        assert_eq!(set.kic.to_byte(), 0x12);
        assert_eq!(set.kid.to_byte(), 0x12);
        assert!(!format!("{set:?}").contains(&apdu::hex(ota.enc.expose())));
    }
}
