//! SCP11 host ↔ card round trips: 11a/11b/11c × P-256/P-384 × AES-128/192/256 × S8/S16 ×
//! every key usage (security level); tampered receipts, wrong OCE keys and tampered
//! ephemeral keys are refused.

use apdu::{Command, Response, StatusWord};
use proptest::prelude::*;
use scp::scp11::*;
use scp::{Error, SecurityLevel};

fn key(curve: Curve, seed: u8) -> PrivateKey {
    let mut s = vec![seed | 1; curve.field_len()];
    s[0] = 0x21;
    PrivateKey::from_scalar(curve, &s).unwrap()
}

struct Setup {
    sk_sd: PrivateKey,
    sk_oce: PrivateKey,
    params: Params,
}

fn setup(variant: Variant, curve: Curve, key_len: usize, s16: bool, usage: u8) -> Setup {
    let mut params = Params::new(variant, 0x03);
    params.key_len = key_len;
    params.s16 = s16;
    params.key_usage = usage;
    Setup {
        sk_sd: key(curve, 0x11),
        sk_oce: key(curve, 0x22),
        params,
    }
}

/// Runs the handshake; returns the host's and the card's result.
fn handshake(
    s: &Setup,
    card_oce: Option<&PublicKey>,
    host_oce: Option<&PrivateKey>,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Result<(scp::HostSession, scp::CardSession), Error> {
    let pk_sd = s.sk_sd.public_key().clone();
    let auth = HostAuth::new(s.params, &pk_sd)?;
    let cmd = auth.command();
    assert_eq!(cmd.ins, s.params.variant.ins());
    assert_eq!((cmd.p1, cmd.p2), (s.params.kvn, s.params.kid));
    let card = CardParams {
        sk_sd: &s.sk_sd,
        pk_oce: card_oce,
        variant: s.params.variant,
        s16: s.params.s16,
    };
    let (mut data, card_session) = card_authenticate(&card, &cmd.data)?;
    tamper(&mut data);
    let resp = Response::new(data, StatusWord::SUCCESS);
    let oce = host_oce.map(|k| k as &dyn OceKeyAgreement);
    let host_session = auth.finish(&resp, &pk_sd, oce)?;
    Ok((host_session, card_session))
}

fn exchange(host: &mut scp::HostSession, card: &mut scp::CardSession, data: &[u8]) {
    let plain = Command::new(0x80, 0xCA, 0x00, 0x66)
        .with_data(data.to_vec())
        .with_le(256);
    let wire = host.wrap(&plain).unwrap();
    assert_eq!(card.unwrap(&wire).unwrap(), plain);
    let answer = Response::new(data.iter().rev().copied().collect(), StatusWord::SUCCESS);
    let wire = card.wrap(answer.clone());
    assert_eq!(host.unwrap(wire).unwrap(), answer);
}

fn variants() -> impl Strategy<Value = Variant> {
    prop_oneof![Just(Variant::A), Just(Variant::B), Just(Variant::C)]
}

fn curves() -> impl Strategy<Value = Curve> {
    prop_oneof![Just(Curve::P256), Just(Curve::P384)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn host_and_card_agree(
        variant in variants(), curve in curves(),
        key_len in prop_oneof![Just(16usize), Just(24), Just(32)],
        s16 in any::<bool>(),
        usage in prop_oneof![Just(0x3Cu8), Just(0x34), Just(0x1C), Just(0x14)],
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
    ) {
        let s = setup(variant, curve, key_len, s16, usage);
        let pk_oce = s.sk_oce.public_key().clone();
        let (mut host, mut card) =
            handshake(&s, Some(&pk_oce), Some(&s.sk_oce), |_| {}).unwrap();
        let level = level_of_usage(usage).unwrap();
        prop_assert_eq!(host.level(), level);
        prop_assert_eq!(card.level(), level);
        prop_assert_eq!(host.scp11(), Some(variant));
        prop_assert_eq!(card.scp11(), Some(variant));
        for m in &msgs {
            exchange(&mut host, &mut card, m);
        }
        // PUT KEY data: encrypted with S-DEK on the host, decrypted on the card.
        let k = scp::Key::aes(&[0x5A; 16]).unwrap();
        let enc = host.encrypt_key(&k).unwrap();
        prop_assert_eq!(card.decrypt_key(scp::KeyKind::Aes, &enc, 16).unwrap(), k);
    }

    #[test]
    fn tampered_receipt_or_epk_refused(variant in variants(), curve in curves(), byte in any::<usize>(), bit in 0u8..8) {
        let s = setup(variant, curve, 16, false, KEY_USAGE_FULL);
        let pk_oce = s.sk_oce.public_key().clone();
        let r = handshake(&s, Some(&pk_oce), Some(&s.sk_oce), |d| {
            let i = byte % d.len();
            d[i] ^= 1 << bit;
        });
        prop_assert!(r.is_err());
    }
}

#[test]
fn receipt_mismatch_is_typed() {
    for variant in [Variant::A, Variant::B, Variant::C] {
        let s = setup(variant, Curve::P256, 16, false, KEY_USAGE_FULL);
        let pk_oce = s.sk_oce.public_key().clone();
        let r = handshake(&s, Some(&pk_oce), Some(&s.sk_oce), |d| {
            let n = d.len();
            d[n - 1] ^= 1;
        });
        assert_eq!(r.err(), Some(Error::ReceiptMismatch), "{variant}");
    }
}

#[test]
fn wrong_oce_key_refused() {
    for variant in [Variant::A, Variant::C] {
        let s = setup(variant, Curve::P256, 16, false, KEY_USAGE_FULL);
        let other = key(Curve::P256, 0x33);
        // The card knows PK.OCE from the certificate; the host uses another private key.
        let pk_oce = s.sk_oce.public_key().clone();
        let r = handshake(&s, Some(&pk_oce), Some(&other), |_| {});
        assert_eq!(r.err(), Some(Error::ReceiptMismatch), "{variant}");
        // The card verified another certificate than the host's key.
        let r = handshake(&s, Some(other.public_key()), Some(&s.sk_oce), |_| {});
        assert_eq!(r.err(), Some(Error::ReceiptMismatch), "{variant}");
        // 11a/11c without an OCE key, on either side.
        assert!(handshake(&s, None, Some(&s.sk_oce), |_| {}).is_err());
        assert!(handshake(&s, Some(&pk_oce), None, |_| {}).is_err());
    }
    // SCP11b needs neither.
    let s = setup(Variant::B, Curve::P384, 32, true, KEY_USAGE_FULL);
    assert!(handshake(&s, None, None, |_| {}).is_ok());
}

#[test]
fn scp11c_sends_pk_sd() {
    let s = setup(Variant::C, Curve::P256, 16, false, KEY_USAGE_FULL);
    let auth = HostAuth::new(s.params, s.sk_sd.public_key()).unwrap();
    let card = CardParams {
        sk_sd: &s.sk_sd,
        pk_oce: Some(s.sk_oce.public_key()),
        variant: Variant::C,
        s16: false,
    };
    let (data, _) = card_authenticate(&card, &auth.command().data).unwrap();
    let resp = AuthResponse::parse(&data).unwrap();
    assert_eq!(resp.epk_sd, s.sk_sd.public_key().to_sec1());
    // Deterministic for a given host request.
    let (again, _) = card_authenticate(&card, &auth.command().data).unwrap();
    assert_eq!(again, data);
}

#[test]
fn card_refuses_bad_requests() {
    let s = setup(Variant::A, Curve::P256, 16, false, KEY_USAGE_FULL);
    let esk = key(Curve::P256, 0x77);
    let good = HostAuth::with_ephemeral(s.params, esk)
        .unwrap()
        .command()
        .data;
    let card = CardParams {
        sk_sd: &s.sk_sd,
        pk_oce: Some(s.sk_oce.public_key()),
        variant: Variant::A,
        s16: false,
    };
    assert!(card_authenticate(&card, &good).is_ok());
    // Another variant than the key's.
    let b = CardParams {
        variant: Variant::B,
        ..card
    };
    assert!(card_authenticate(&b, &good).is_err());
    // A P-384 key for a P-256 ephemeral key.
    let sk384 = key(Curve::P384, 5);
    let c384 = CardParams {
        sk_sd: &sk384,
        ..card
    };
    assert!(card_authenticate(&c384, &good).is_err());
    // Every single-byte change of the request is refused or changes the keys.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        if let Ok((data, _)) = card_authenticate(&card, &bad) {
            let r = auth_finish_again(&s, &data);
            assert!(r.is_err(), "byte {i}");
        }
    }
    // Truncations never panic.
    for n in 0..good.len() {
        let _ = card_authenticate(&card, &good[..n]);
    }
    assert!(matches!(level_of_usage(0x00), Err(Error::Unsupported(_))));
    assert_eq!(level_of_usage(0x3C).unwrap(), SecurityLevel(0x33));
}

/// The host (which sent the unmodified request, ephemeral key seed 77) checks an answer.
fn auth_finish_again(s: &Setup, answer: &[u8]) -> Result<scp::HostSession, Error> {
    let esk = key(Curve::P256, 0x77);
    let host = HostAuth::with_ephemeral(s.params, esk)?;
    host.finish(
        &Response::new(answer.to_vec(), StatusWord::SUCCESS),
        s.sk_sd.public_key(),
        Some(&s.sk_oce as &dyn OceKeyAgreement),
    )
}

#[test]
fn status_and_malformed_answers() {
    let s = setup(Variant::B, Curve::P256, 16, false, KEY_USAGE_FULL);
    let pk_sd = s.sk_sd.public_key().clone();
    let auth = HostAuth::new(s.params, &pk_sd).unwrap();
    assert_eq!(
        auth.finish(&Response::status(StatusWord(0x6982)), &pk_sd, None)
            .err(),
        Some(Error::Status(StatusWord(0x6982)))
    );
    for bad in [&b""[..], &[0x5F, 0x49, 0x00, 0x86, 0x00], &[0x86, 0x10]] {
        let auth = HostAuth::new(s.params, &pk_sd).unwrap();
        assert!(auth
            .finish(
                &Response::new(bad.to_vec(), StatusWord::SUCCESS),
                &pk_sd,
                None
            )
            .is_err());
    }
    // Debug output holds no secret.
    let k = key(Curve::P256, 0x11);
    let d = format!("{k:?}");
    assert!(!d.contains(&apdu::hex(k.expose_scalar())));
}
