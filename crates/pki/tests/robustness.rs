//! Parsers of untrusted bytes never panic and reject what they cannot vouch for.

mod common;

use common::{enrol, env, Card};
use pki::{piv, PaymentError, PublicKey};
use proptest::prelude::*;

#[test]
fn empty_rsa_components_are_refused() {
    assert!(PublicKey::from_rsa_components(&[], &[1, 0, 1]).is_err());
    assert!(PublicKey::from_rsa_components(&[0, 0], &[1, 0, 1]).is_err());
    let t = [0x7F, 0x49, 0x07, 0x81, 0x00, 0x82, 0x03, 0x01, 0x00, 0x01];
    assert!(piv::parse_public_key_template(&t, piv::PivAlgorithm::Rsa2048).is_err());
    let mut n = vec![0xC1u8; 256];
    n[255] |= 1;
    assert!(PublicKey::from_rsa_components(&n, &[]).is_err());
    assert!(PublicKey::from_rsa_components(&n, &[1; 9]).is_err());
    assert!(
        PublicKey::from_rsa_components(&n, &[2]).is_err(),
        "even exponent"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn piv_template_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = piv::parse_public_key_template(&bytes, piv::PivAlgorithm::Rsa2048);
        let _ = piv::parse_public_key_template(&bytes, piv::PivAlgorithm::EccP256);
        let mut t = vec![0x7F, 0x49];
        t.extend(&bytes);
        let _ = piv::parse_public_key_template(&t, piv::PivAlgorithm::EccP256);
    }

    #[test]
    fn spki_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = PublicKey::from_spki_der(&bytes);
        let _ = pki::Certificate::from_der(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single-byte change to a good certificate is refused (or, if the byte did not
    /// change anything the CA signed, still verified), and nothing panics.
    #[test]
    fn mutated_certificates_are_refused(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        thread_local! {
            static FIXTURE: (common::Env, Card, pki::Certificate) = {
                let env = env();
                let card = Card::p256();
                let cert = enrol(&env, &card);
                (env, card, cert)
            };
        }
        FIXTURE.with(|(env, card, cert)| {
            let mut der = cert.der().to_vec();
            let i = pos.index(der.len());
            let changed = der[i] != byte;
            der[i] = byte;
            let c = env.payments.issue_challenge(common::order(1), None).unwrap();
            let sig = card.sign_digest(&c.digest());
            let r = env.payments.verify(&c.id, &common::order(1), &der, &sig);
            if changed {
                prop_assert!(matches!(
                    r,
                    Err(PaymentError::MalformedCertificate(_))
                        | Err(PaymentError::ForeignCertificate(_))
                        | Err(PaymentError::NotClientCertificate(_))
                ), "byte {} -> {:02x}: {:?}", i, byte, r);
            } else {
                prop_assert!(r.is_ok());
            }
            Ok(())
        })?;
    }
}
