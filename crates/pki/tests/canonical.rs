//! The canonical payment encoding: a worked example, round trip, injectivity and a
//! decoder that never panics.

use pki::{
    payment::PAYMENT_TAG, CanonicalError, ChallengeId, PaymentChallenge, PaymentRequest, Serial,
};
use proptest::prelude::*;
use time::OffsetDateTime;

fn example() -> PaymentChallenge {
    PaymentChallenge {
        id: ChallengeId([0x11; 16]),
        nonce: [0x22; 32],
        expires_at: OffsetDateTime::from_unix_timestamp(0x6955_B900).unwrap(),
        request: PaymentRequest {
            amount_minor: 12_345,
            currency: "CNY".into(),
            payee: "Shop".into(),
            order_id: "A1".into(),
        },
        payer: Serial::from_bytes(&[0x7F, 0x01]),
    }
}

/// The layout of the module documentation, written out byte by byte.
#[test]
fn worked_example() {
    let mut want = b"cardwright/payment/v1\0".to_vec();
    want.extend([0x01, 0x00, 0x10]);
    want.extend([0x11; 16]);
    want.extend([0x02, 0x00, 0x20]);
    want.extend([0x22; 32]);
    want.extend([0x03, 0x00, 0x08, 0, 0, 0, 0, 0x69, 0x55, 0xB9, 0x00]);
    want.extend([0x04, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x30, 0x39]);
    want.extend([0x05, 0x00, 0x03, b'C', b'N', b'Y']);
    want.extend([0x06, 0x00, 0x04, b'S', b'h', b'o', b'p']);
    want.extend([0x07, 0x00, 0x02, b'A', b'1']);
    want.extend([0x08, 0x00, 0x02, 0x7F, 0x01]);
    let c = example();
    assert_eq!(c.canonical_bytes(), want);
    assert_eq!(PaymentChallenge::from_canonical_bytes(&want).unwrap(), c);
    assert_eq!(c.digest(), pki::key::sha256(&want));
    let mut unbound = c.clone();
    unbound.payer = None;
    let bytes = unbound.canonical_bytes();
    assert_eq!(&bytes[bytes.len() - 3..], &[0x08, 0x00, 0x00]);
}

#[test]
fn field_boundaries_cannot_shift() {
    let mut a = example();
    a.request.payee = "ab".into();
    a.request.order_id = "c".into();
    let mut b = example();
    b.request.payee = "a".into();
    b.request.order_id = "bc".into();
    assert_ne!(a.canonical_bytes(), b.canonical_bytes());
}

#[test]
fn decoder_errors_are_precise() {
    let good = example().canonical_bytes();
    let dec = PaymentChallenge::from_canonical_bytes;
    assert_eq!(dec(&[]), Err(CanonicalError::BadTag));
    assert_eq!(dec(b"cardwright/payment/v2\0"), Err(CanonicalError::BadTag));
    assert_eq!(dec(PAYMENT_TAG), Err(CanonicalError::Truncated(1)));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(dec(&trailing), Err(CanonicalError::TrailingBytes));
    let mut wrong_tag = good.clone();
    wrong_tag[22] = 0x02;
    assert_eq!(
        dec(&wrong_tag),
        Err(CanonicalError::UnexpectedField {
            expected: 1,
            found: 2
        })
    );
    let mut short_id = good.clone();
    short_id[24] = 0x0F;
    assert!(matches!(
        dec(&short_id),
        Err(CanonicalError::InvalidField { tag: 1, .. })
    ));
    let zero_amount = {
        let mut c = example();
        c.request.amount_minor = 0;
        c.canonical_bytes()
    };
    assert!(matches!(
        dec(&zero_amount),
        Err(CanonicalError::InvalidField { tag: 4, .. })
    ));
    let lower = {
        let mut c = example();
        c.request.currency = "cny".into();
        c.canonical_bytes()
    };
    assert!(matches!(
        dec(&lower),
        Err(CanonicalError::InvalidField { tag: 5, .. })
    ));
    let non_minimal_payer = {
        let mut v = good[..good.len() - 5].to_vec();
        v.extend([0x08, 0x00, 0x03, 0x00, 0x7F, 0x01]);
        v
    };
    assert!(matches!(
        dec(&non_minimal_payer),
        Err(CanonicalError::InvalidField { tag: 8, .. })
    ));
    for cut in 0..good.len() {
        assert!(dec(&good[..cut]).is_err(), "prefix of {cut} bytes accepted");
    }
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\p{{Cc}}]{{1,{max}}}"))
        .unwrap()
        .prop_filter("byte length", move |s| s.len() <= max)
}

prop_compose! {
    fn request()(
        amount_minor in 1u64..,
        currency in "[A-Z]{3}",
        payee in text(40),
        order_id in text(20),
    ) -> PaymentRequest {
        PaymentRequest { amount_minor, currency, payee, order_id }
    }
}

prop_compose! {
    fn challenge()(
        id in any::<[u8; 16]>(),
        nonce in any::<[u8; 32]>(),
        expires in 0i64..=253_402_300_799,
        request in request(),
        payer in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=20)),
    ) -> PaymentChallenge {
        PaymentChallenge {
            id: ChallengeId(id),
            nonce,
            expires_at: OffsetDateTime::from_unix_timestamp(expires).unwrap(),
            request,
            payer: payer.and_then(|p| Serial::from_bytes(&p)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(c in challenge()) {
        let bytes = c.canonical_bytes();
        prop_assert_eq!(PaymentChallenge::from_canonical_bytes(&bytes).unwrap(), c);
    }

    /// Injectivity: different challenges never share bytes (and so never share a digest
    /// short of a SHA-256 collision).
    #[test]
    fn injective(a in challenge(), b in challenge()) {
        if a != b {
            prop_assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        } else {
            prop_assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        }
    }

    /// Changing any single request field changes the bytes.
    #[test]
    fn each_field_matters(c in challenge(), other in request()) {
        let base = c.canonical_bytes();
        let mut d = c.clone();
        if other.amount_minor != c.request.amount_minor {
            d.request.amount_minor = other.amount_minor;
            prop_assert_ne!(d.canonical_bytes(), base.clone());
        }
        let mut d = c.clone();
        if other.payee != c.request.payee {
            d.request.payee = other.payee.clone();
            prop_assert_ne!(d.canonical_bytes(), base.clone());
        }
        let mut d = c.clone();
        if other.order_id != c.request.order_id {
            d.request.order_id = other.order_id.clone();
            prop_assert_ne!(d.canonical_bytes(), base.clone());
        }
        let mut d = c;
        if other.currency != d.request.currency {
            d.request.currency = other.currency;
            prop_assert_ne!(d.canonical_bytes(), base);
        }
    }

    /// Splitting one string differently between payee and order id never collides.
    #[test]
    fn no_boundary_shift(c in challenge(), s in "[a-z]{2,30}", i in 1usize..29, j in 1usize..29) {
        let (i, j) = (i.min(s.len() - 1), j.min(s.len() - 1));
        let mut a = c.clone();
        a.request.payee = s[..i].into();
        a.request.order_id = s[i..].into();
        let mut b = c;
        b.request.payee = s[..j].into();
        b.request.order_id = s[j..].into();
        prop_assert_eq!(i == j, a.canonical_bytes() == b.canonical_bytes());
    }

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = PaymentChallenge::from_canonical_bytes(&bytes);
        let mut tagged = PAYMENT_TAG.to_vec();
        tagged.extend(&bytes);
        let _ = PaymentChallenge::from_canonical_bytes(&tagged);
    }

    #[test]
    fn decoder_survives_mutations(c in challenge(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = c.canonical_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(d) = PaymentChallenge::from_canonical_bytes(&bytes) {
            // Whatever decodes re-encodes to exactly the input (the form is canonical).
            prop_assert_eq!(d.canonical_bytes(), bytes);
        }
    }
}

proptest! {
    /// `PublicKey::verify` (ring for P-256) and `verify_digest` of the message's SHA-256
    /// (RustCrypto) accept and refuse the same signatures.
    #[test]
    fn p256_message_and_digest_verification_agree(
        seed in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<u8>(),
        tamper in any::<bool>(),
    ) {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let Ok(sk) = p256::ecdsa::SigningKey::from_slice(&seed) else {
            return Ok(());
        };
        let digest = pki::key::sha256(&msg);
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let mut der = sig.to_der().as_bytes().to_vec();
        if tamper {
            let i = usize::from(flip) % der.len();
            der[i] ^= 1 | flip;
        }
        let key = pki::PublicKey::P256(p256::PublicKey::from(sk.verifying_key()));
        let by_message = key.verify(&msg, &der);
        let by_digest = key.verify_digest(&digest, &der);
        prop_assert_eq!(by_message, by_digest);
        if !tamper {
            prop_assert!(by_message.is_ok());
        }
    }
}
