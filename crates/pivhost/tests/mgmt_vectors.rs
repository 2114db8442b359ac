//! Known answers for the management-key block ciphers (3DES, AES-128/192/256 ECB).

mod common;

use common::{hex, vector_lines};
use pivhost::{MgmtAlgorithm, MgmtKey};

fn check(text: &str, pick: impl Fn(usize) -> Option<MgmtAlgorithm>) -> usize {
    let mut n = 0;
    for v in vector_lines(text) {
        let (name, key, pt, ct) = (&v[0], hex(&v[1]), hex(&v[2]), hex(&v[3]));
        let Some(alg) = pick(key.len()) else { continue };
        let k = MgmtKey::new(alg, &key).unwrap();
        let bl = alg.block_len();
        for (p, c) in pt.chunks(bl).zip(ct.chunks(bl)) {
            let mut b = p.to_vec();
            k.encrypt_block(&mut b).unwrap();
            assert_eq!(b, c, "{name} encrypt");
            k.decrypt_block(&mut b).unwrap();
            assert_eq!(b, p, "{name} decrypt");
        }
        n += 1;
    }
    n
}

#[test]
fn tdes_ecb_known_answers() {
    let n = check(include_str!("vectors/tdes_ecb.txt"), |_| {
        Some(MgmtAlgorithm::Tdes)
    });
    assert!(n >= 5);
}

#[test]
fn aes_ecb_known_answers() {
    let n = check(include_str!("vectors/aes_ecb.txt"), |len| match len {
        16 => Some(MgmtAlgorithm::Aes128),
        24 => Some(MgmtAlgorithm::Aes192),
        32 => Some(MgmtAlgorithm::Aes256),
        _ => None,
    });
    assert!(n >= 3);
}

#[test]
fn key_checks_and_redaction() {
    assert!(MgmtKey::new(MgmtAlgorithm::Aes128, &[0; 24]).is_err());
    let k = MgmtKey::default_for(MgmtAlgorithm::Tdes).unwrap();
    assert!(k.encrypt_block(&mut [0; 16]).is_err());
    let dbg = format!("{k:?}");
    assert!(dbg.contains("redacted") && !dbg.contains("01, 02"), "{dbg}");
    assert_eq!(
        MgmtAlgorithm::from_name("AES192"),
        Some(MgmtAlgorithm::Aes192)
    );
    assert_eq!(MgmtAlgorithm::from_id(0x00), Some(MgmtAlgorithm::Tdes));
    assert_eq!(MgmtAlgorithm::from_id(0x07), None);
}
