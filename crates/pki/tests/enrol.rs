//! Enrolment: proof of possession, challenge life cycle, CSR handling.

mod common;

use std::time::Duration;

use common::{alice, env, hex, Card};
use der::{asn1::BitString, Decode, Encode};
use pki::{enrol::POP_TAG, piv, EnrolError, KeyError, PublicKey, SignatureError, Subject};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::request::{CertReq, CertReqInfo, Version};

fn key_of(card: &Card) -> PublicKey {
    piv::parse_public_key_template(&card.generate_response(), card.algorithm()).unwrap()
}

#[test]
fn enrols_p256_and_rsa_cards_through_7f49_and_general_authenticate() {
    let env = env();
    for card in [Card::p256(), Card::rsa(0)] {
        let challenge = env.enroller.issue_challenge(alice()).unwrap();
        let key = key_of(&card);
        let proof = card.sign_digest(&challenge.digest());
        let cert = env
            .enroller
            .complete(&challenge.id, &key, &proof, None)
            .unwrap();
        assert_eq!(cert.public_key().unwrap(), card.public_key());
        assert!(cert.subject().contains("CN=Alice Example"));
    }
}

#[test]
fn signed_data_layout() {
    let env = env();
    let c = env.enroller.issue_challenge(alice()).unwrap();
    let data = c.signed_data();
    assert_eq!(data.len(), 80);
    assert_eq!(&data[..24], POP_TAG);
    assert_eq!(&data[24..40], &c.id.0);
    assert_eq!(&data[40..72], &c.nonce);
    assert_eq!(
        i64::from_be_bytes(data[72..80].try_into().unwrap()),
        (common::start() + time::Duration::minutes(5)).unix_timestamp()
    );
    assert_eq!(c.digest(), pki::key::sha256(&data));
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains(&c.id.to_string()));
    assert_eq!(
        serde_json::from_str::<pki::EnrolmentChallenge>(&json).unwrap(),
        c
    );
    assert_eq!(c.expires_at, common::start() + time::Duration::minutes(5));
}

#[test]
fn challenge_is_one_time() {
    let env = env();
    let card = Card::p256();
    let c = env.enroller.issue_challenge(alice()).unwrap();
    let proof = card.sign_digest(&c.digest());
    env.enroller
        .complete(&c.id, &key_of(&card), &proof, None)
        .unwrap();
    let again = env.enroller.complete(&c.id, &key_of(&card), &proof, None);
    assert!(matches!(again, Err(EnrolError::Replayed)), "{again:?}");
}

#[test]
fn unknown_and_expired_challenges_are_refused() {
    let env = env();
    let card = Card::p256();
    let c = env.enroller.issue_challenge(alice()).unwrap();
    let proof = card.sign_digest(&c.digest());
    let unknown = pki::ChallengeId([7; 16]);
    assert!(matches!(
        env.enroller
            .complete(&unknown, &key_of(&card), &proof, None),
        Err(EnrolError::UnknownChallenge)
    ));
    let c2 = env.enroller.issue_challenge(alice()).unwrap();
    env.clock.advance(time::Duration::minutes(5));
    // Exactly at expiry it is still accepted; one second later it is not.
    env.enroller
        .complete(&c.id, &key_of(&card), &proof, None)
        .unwrap();
    env.clock.advance(time::Duration::seconds(1));
    let proof2 = card.sign_digest(&c2.digest());
    let e = env.enroller.complete(&c2.id, &key_of(&card), &proof2, None);
    assert!(
        matches!(e, Err(EnrolError::Expired { expired_at }) if expired_at == c2.expires_at),
        "{e:?}"
    );
}

#[test]
fn proof_of_possession_must_be_by_the_presented_key_over_this_challenge() {
    let env = env();
    let card = Card::p256();
    let other = Card::p256();
    let c = env.enroller.issue_challenge(alice()).unwrap();
    // Signed by another key.
    let e = env
        .enroller
        .complete(&c.id, &key_of(&card), &other.sign_digest(&c.digest()), None);
    assert!(
        matches!(
            e,
            Err(EnrolError::BadProofOfPossession(SignatureError::Invalid))
        ),
        "{e:?}"
    );
    // Signed over another challenge.
    let c2 = env.enroller.issue_challenge(alice()).unwrap();
    let e = env
        .enroller
        .complete(&c.id, &key_of(&card), &card.sign_digest(&c2.digest()), None);
    assert!(matches!(
        e,
        Err(EnrolError::BadProofOfPossession(SignatureError::Invalid))
    ));
    // Garbage.
    let e = env
        .enroller
        .complete(&c.id, &key_of(&card), &[0x30, 0x00], None);
    assert!(matches!(
        e,
        Err(EnrolError::BadProofOfPossession(SignatureError::Malformed))
    ));
    // RSA with a signature of the wrong length.
    let rsa = Card::rsa(0);
    let e = env.enroller.complete(&c.id, &key_of(&rsa), &[1; 255], None);
    assert!(matches!(
        e,
        Err(EnrolError::BadProofOfPossession(SignatureError::Malformed))
    ));
    // Failed attempts do not consume the challenge.
    env.enroller
        .complete(&c.id, &key_of(&card), &card.sign_digest(&c.digest()), None)
        .unwrap();
}

#[test]
fn only_rsa_2048_and_p256_card_keys() {
    let env = env();
    let c = env.enroller.issue_challenge(alice()).unwrap();
    let mut n = vec![0xC1u8; 384];
    n[383] = 0x01;
    let rsa3072 = PublicKey::from_rsa_components(&n, &[1, 0, 1]).unwrap();
    let e = env.enroller.complete(&c.id, &rsa3072, &[0; 384], None);
    assert!(
        matches!(e, Err(EnrolError::Key(KeyError::RsaModulusSize(3072)))),
        "{e:?}"
    );
}

#[test]
fn subject_from_the_account_is_validated() {
    let env = env();
    let e = env.enroller.issue_challenge(Subject::new("Bob\u{7}"));
    assert!(matches!(e, Err(EnrolError::Subject(_))));
}

/// A PKCS#10 request signed on the card (RFC 2986 §4.2).
fn csr(card: &Card, for_key: &PublicKey, corrupt: bool) -> Vec<u8> {
    let info = CertReqInfo {
        version: Version::V1,
        subject: "CN=ignored".parse().unwrap(),
        public_key: SubjectPublicKeyInfoOwned::from_der(&for_key.to_spki_der()).unwrap(),
        attributes: Default::default(),
    };
    let info_der = info.to_der().unwrap();
    let mut sig = card.sign_digest(&pki::key::sha256(&info_der));
    if corrupt {
        let i = sig.len() - 1;
        sig[i] ^= 1;
    }
    let algorithm = match card {
        Card::Rsa(_) => hex("300d06092a864886f70d01010b0500"),
        Card::P256(_) => hex("300a06082a8648ce3d040302"),
    };
    CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned::from_der(&algorithm).unwrap(),
        signature: BitString::from_bytes(&sig).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn optional_csr_is_checked() {
    let env = env();
    for card in [Card::p256(), Card::rsa(1)] {
        let key = key_of(&card);
        let c = env.enroller.issue_challenge(alice()).unwrap();
        let proof = card.sign_digest(&c.digest());
        // Corrupted signature.
        let e = env
            .enroller
            .complete(&c.id, &key, &proof, Some(&csr(&card, &key, true)));
        assert!(matches!(e, Err(EnrolError::BadCsr(_))), "{e:?}");
        // Request for another key.
        let other = Card::p256();
        let e = env.enroller.complete(
            &c.id,
            &key,
            &proof,
            Some(&csr(&other, &other.public_key(), false)),
        );
        assert!(matches!(e, Err(EnrolError::CsrKeyMismatch)), "{e:?}");
        // Not DER.
        let e = env
            .enroller
            .complete(&c.id, &key, &proof, Some(&[0x30, 0x01, 0x00]));
        assert!(matches!(e, Err(EnrolError::BadCsr(_))), "{e:?}");
        // Good request: subject still comes from the account.
        let cert = env
            .enroller
            .complete(&c.id, &key, &proof, Some(&csr(&card, &key, false)))
            .unwrap();
        assert!(!cert.subject().contains("ignored"));
    }
}

#[test]
fn certificate_validity_is_configurable() {
    let env = env();
    let enroller = pki::Enroller::new(env.ca.clone(), env.store.clone())
        .with_certificate_validity(Duration::from_secs(86400))
        .with_challenge_ttl(Duration::from_secs(30));
    let card = Card::p256();
    let c = enroller.issue_challenge(alice()).unwrap();
    assert_eq!(c.expires_at, common::start() + time::Duration::seconds(30));
    let cert = enroller
        .complete(&c.id, &key_of(&card), &card.sign_digest(&c.digest()), None)
        .unwrap();
    assert_eq!(cert.not_after(), common::start() + time::Duration::days(1));
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(EnrolError::Replayed.code(), "replayed");
    assert_eq!(EnrolError::UnknownChallenge.code(), "unknown_challenge");
    assert_eq!(
        EnrolError::BadProofOfPossession(SignatureError::Invalid).code(),
        "bad_proof_of_possession"
    );
}
