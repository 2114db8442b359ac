//! Known-answer tests from public sources (see the `# source:` lines in `tests/vectors/`).

mod common;

use common::hex;
use pki::{piv, KeyAlgorithm, KeyError, PublicKey, SignatureError};

const RSA_VECTORS: &str = include_str!("vectors/rsa_pkcs1v15_sha256_2048.txt");
const ECDSA_VECTORS: &str = include_str!("vectors/ecdsa_p256_sha256.txt");

fn lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
}

fn wycheproof_rsa_key() -> PublicKey {
    let spki = lines(RSA_VECTORS)
        .find(|f| f[0] == "spki")
        .expect("spki line");
    PublicKey::from_spki_der(&hex(spki[1])).expect("Wycheproof key")
}

#[test]
fn wycheproof_rsa_pkcs1v15_sha256_2048() {
    let key = wycheproof_rsa_key();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
    let mut checked = 0;
    for f in lines(RSA_VECTORS).filter(|f| f[0] != "spki") {
        let (id, result, msg, sig) = (f[0], f[1], f[2], hex(f[3]));
        let msg = if msg == "-" { Vec::new() } else { hex(msg) };
        let outcome = key.verify(&msg, &sig);
        match result {
            "valid" => assert_eq!(outcome, Ok(()), "tcId {id}"),
            // Legacy DigestInfo without NULL: we only accept the DER form of RFC 8017 §9.2.
            "acceptable" | "invalid" => assert!(outcome.is_err(), "tcId {id} must be rejected"),
            other => panic!("unknown result {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 16);
}

#[test]
fn wycheproof_rsa_spki_round_trips() {
    let spki = hex(lines(RSA_VECTORS).find(|f| f[0] == "spki").expect("spki")[1]);
    assert_eq!(
        PublicKey::from_spki_der(&spki).expect("key").to_spki_der(),
        spki
    );
}

#[test]
fn rsa_signature_of_wrong_length_is_malformed() {
    let key = wycheproof_rsa_key();
    let f: Vec<_> = lines(RSA_VECTORS).find(|f| f[0] == "1").expect("tcId 1");
    let mut sig = hex(f[3]);
    sig.insert(0, 0);
    assert_eq!(key.verify(b"", &sig), Err(SignatureError::Malformed));
    sig.drain(..2);
    assert_eq!(key.verify(b"", &sig), Err(SignatureError::Malformed));
}

fn p256_key(qx: &str, qy: &str) -> PublicKey {
    let mut point = vec![0x04];
    point.extend(hex(qx));
    point.extend(hex(qy));
    PublicKey::from_p256_uncompressed(&point).expect("point")
}

/// r || s (32 bytes each) → DER Ecdsa-Sig-Value, as a PIV card returns it.
fn der_sig(r: &str, s: &str) -> Vec<u8> {
    let sig = p256::ecdsa::Signature::from_scalars(
        <[u8; 32]>::try_from(hex(r)).expect("r"),
        <[u8; 32]>::try_from(hex(s)).expect("s"),
    )
    .expect("scalars");
    sig.to_der().as_bytes().to_vec()
}

#[test]
fn ecdsa_p256_sha256_known_answers() {
    let mut checked = 0;
    for f in lines(ECDSA_VECTORS) {
        let key = p256_key(f[1], f[2]);
        let sig = der_sig(f[4], f[5]);
        let digest: [u8; 32] = match f[0] {
            "msg" => pki::key::sha256(&hex(f[3])),
            "prehash" => hex(f[3]).try_into().expect("32 bytes"),
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(key.verify_digest(&digest, &sig), Ok(()), "vector {checked}");
        if f[0] == "msg" {
            // The message path (ring for P-256) agrees.
            let msg = hex(f[3]);
            assert_eq!(key.verify(&msg, &sig), Ok(()), "vector {checked}");
            let mut m = msg.clone();
            m.push(0);
            assert_eq!(key.verify(&m, &sig), Err(SignatureError::Invalid));
        }
        // Any change of digest or signature must fail.
        let mut d = digest;
        d[31] ^= 1;
        assert_eq!(key.verify_digest(&d, &sig), Err(SignatureError::Invalid));
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(key.verify_digest(&digest, &bad).is_err());
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn ecdsa_accepts_high_s_and_rejects_non_der() {
    // A card need not normalise s: (r, n - s) is also valid (SEC 1 §4.1.4).
    let f: Vec<_> = lines(ECDSA_VECTORS).next().expect("first");
    let key = p256_key(f[1], f[2]);
    let digest = pki::key::sha256(&hex(f[3]));
    let sig = p256::ecdsa::Signature::from_scalars(
        <[u8; 32]>::try_from(hex(f[4])).expect("r"),
        <[u8; 32]>::try_from(hex(f[5])).expect("s"),
    )
    .expect("scalars");
    let (r, s) = sig.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).expect("sig");
    assert_eq!(key.verify_digest(&digest, high.to_der().as_bytes()), Ok(()));
    // Raw r || s is not what a PIV card returns: malformed.
    assert_eq!(
        key.verify_digest(&digest, &sig.to_bytes()),
        Err(SignatureError::Malformed)
    );
}

#[test]
fn piv_templates_of_public_keys() {
    // RFC 6979 A.2.5 key as a 7F49 template (SP 800-73-4 Part 2 §3.3.2: tag 86).
    let f: Vec<_> = lines(ECDSA_VECTORS).next().expect("first");
    let mut t = vec![0x7F, 0x49, 0x43, 0x86, 0x41, 0x04];
    t.extend(hex(f[1]));
    t.extend(hex(f[2]));
    let key = piv::parse_public_key_template(&t, piv::PivAlgorithm::EccP256).expect("ecc");
    assert_eq!(key, p256_key(f[1], f[2]));
    assert_eq!(piv::encode_public_key_template(&key), t);

    // The Wycheproof RSA-2048 key as a template: 81 modulus (256 bytes), 82 exponent.
    let rsa = wycheproof_rsa_key();
    let PublicKey::Rsa(k) = &rsa else {
        panic!("rsa")
    };
    use rsa::traits::PublicKeyParts;
    let n = k.n_bytes();
    let mut body = vec![0x81, 0x82, 0x01, 0x00];
    body.extend_from_slice(&n);
    body.extend_from_slice(&[0x82, 0x03, 0x01, 0x00, 0x01]);
    let mut t = vec![0x7F, 0x49, 0x82, 0x01, 0x09];
    t.extend(&body);
    let parsed = piv::parse_public_key_template(&t, piv::PivAlgorithm::Rsa2048).expect("rsa");
    assert_eq!(parsed, rsa);
    assert_eq!(piv::encode_public_key_template(&rsa), t);
    // A modulus with a leading zero byte (some cards send a sign byte) is also accepted.
    let mut body0 = vec![0x81, 0x82, 0x01, 0x01, 0x00];
    body0.extend_from_slice(&n);
    body0.extend_from_slice(&[0x82, 0x03, 0x01, 0x00, 0x01]);
    let mut t0 = vec![0x7F, 0x49, 0x82, 0x01, 0x0A];
    t0.extend(&body0);
    assert_eq!(
        piv::parse_public_key_template(&t0, piv::PivAlgorithm::Rsa2048).expect("rsa"),
        rsa
    );
}

#[test]
fn piv_template_errors_are_precise() {
    let f: Vec<_> = lines(ECDSA_VECTORS).next().expect("first");
    let mut t = vec![0x7F, 0x49, 0x43, 0x86, 0x41, 0x04];
    t.extend(hex(f[1]));
    t.extend(hex(f[2]));
    let parse = |d: &[u8], a| piv::parse_public_key_template(d, a);
    // Wrong algorithm asked for.
    assert!(matches!(
        parse(&t, piv::PivAlgorithm::Rsa2048),
        Err(KeyError::Template(_))
    ));
    // Trailing byte.
    let mut tr = t.clone();
    tr.push(0);
    assert!(matches!(
        parse(&tr, piv::PivAlgorithm::EccP256),
        Err(KeyError::Template(_))
    ));
    // Truncated.
    assert!(matches!(
        parse(&t[..t.len() - 1], piv::PivAlgorithm::EccP256),
        Err(KeyError::Template(_))
    ));
    // Point not on the curve.
    let mut off = t.clone();
    let last = off.len() - 1;
    off[last] ^= 1;
    assert_eq!(
        parse(&off, piv::PivAlgorithm::EccP256),
        Err(KeyError::InvalidEcPoint)
    );
    // Compressed point is not what SP 800-73-4 specifies.
    let mut c = vec![0x7F, 0x49, 0x23, 0x86, 0x21, 0x02];
    c.extend(hex(f[1]));
    assert_eq!(
        parse(&c, piv::PivAlgorithm::EccP256),
        Err(KeyError::InvalidEcPoint)
    );
    // Wrong outer tag.
    let mut w = t.clone();
    w[1] = 0x48;
    assert!(matches!(
        parse(&w, piv::PivAlgorithm::EccP256),
        Err(KeyError::Template(_))
    ));
    // Duplicate tag.
    let mut d = vec![0x7F, 0x49, 0x86, 0x86, 0x41, 0x04];
    d.extend(hex(f[1]));
    d.extend(hex(f[2]));
    d.extend(&t[3..]);
    d[2] = (d.len() - 3) as u8;
    assert!(matches!(
        parse(&d, piv::PivAlgorithm::EccP256),
        Err(KeyError::Template(_))
    ));
    // RSA-1024 is refused.
    let mut small = vec![0x81, 0x81, 0x80, 0xC1];
    small.extend([0x5Bu8; 127]);
    small.extend([0x82, 0x03, 0x01, 0x00, 0x01]);
    let mut s = vec![0x7F, 0x49, 0x81, small.len() as u8];
    s.extend(small);
    assert_eq!(
        parse(&s, piv::PivAlgorithm::Rsa2048),
        Err(KeyError::RsaModulusSize(1024))
    );
}

#[test]
fn emsa_block_signed_raw_equals_rsa_crate_pkcs1v15() {
    // The host-padded raw RSA path (PIV) and the library's RSASSA-PKCS1-v1_5 agree.
    let card = common::Card::rsa(0);
    let common::Card::Rsa(k) = &card else {
        panic!("rsa")
    };
    let digest = pki::key::sha256(b"cardwright");
    let via_card = card.sign_digest(&digest);
    let via_lib = k
        .pkcs1v15_sign_prehash::<sha2::Sha256>(&digest)
        .expect("sign");
    assert_eq!(via_card, via_lib);
    assert_eq!(card.public_key().verify_digest(&digest, &via_card), Ok(()));
}

#[test]
fn spki_rejects_other_algorithms_and_trailing_bytes() {
    let f: Vec<_> = lines(ECDSA_VECTORS).next().expect("first");
    let key = p256_key(f[1], f[2]);
    let mut der = key.to_spki_der();
    assert_eq!(PublicKey::from_spki_der(&der).expect("p256"), key);
    der.push(0);
    assert!(matches!(
        PublicKey::from_spki_der(&der),
        Err(KeyError::Der(_))
    ));
    // P-384 SPKI header (secp384r1) is refused with the curve named.
    let p384 = hex("3076301006072a8648ce3d020106052b8104002203620004");
    let mut p384_full = p384.clone();
    p384_full.extend([0x11u8; 96]);
    assert!(matches!(
        PublicKey::from_spki_der(&p384_full),
        Err(KeyError::UnsupportedCurve(c)) if c == "1.3.132.0.34"
    ));
    assert!(PublicKey::from_spki_der(&[]).is_err());
    assert!(PublicKey::from_spki_der(&[0x30, 0x80]).is_err());
}
