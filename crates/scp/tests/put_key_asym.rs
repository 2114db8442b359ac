//! PUT KEY of asymmetric keys (GP 2.3.1 §11.8.2.3, Table 11-16; Amendment F): the exact
//! layouts yubikit and GlobalPlatformPro send, round trips (host encoding → card parsing,
//! ECC private keys through a real SCP03/SCP02 session), multi-command splitting, errors.

use apdu::{parse_hex as h, Response};
use proptest::prelude::*;
use scp::put_key::{self, Curve, KeyData};
use scp::*;

const AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

fn open(keys: &StaticKeys, protocol: Protocol) -> (HostSession, CardSession) {
    let hc = random_challenge(8).unwrap();
    let (card_auth, data) = CardAuth::new(keys, protocol, 0x30, [7; 10], 1, &hc, AID).unwrap();
    let iu = InitUpdateResponse::parse(&data).unwrap();
    let auth = HostAuth::new(keys, &hc, &iu, SecurityLevel(0x03), protocol.i()).unwrap();
    let card = card_auth
        .external_authenticate(&auth.external_authenticate())
        .unwrap();
    (auth.finish(&Response::ok(vec![])).unwrap(), card)
}

fn scp03() -> (HostSession, CardSession) {
    open(
        &StaticKeys::same(Key::aes(&[0x40; 16]).unwrap()),
        Protocol::Scp03 { i: 0x70 },
    )
}

/// A P-256 point (the generator G, uncompressed).
const G256: &str = "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C2964FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";

#[test]
fn ecc_public_key_layout_as_yubikit_sends() {
    // yubikit securitydomain.put_key(KeyRef(0x10, 0x03), ec public key): data =
    // KVN ‖ B0 41 <04 X Y> ‖ F0 01 00 ‖ 00, P1 = replace KVN, P2 = KID; answer = KVN.
    let point = h(G256).unwrap();
    let k = KeyData::ecc_public(Curve::P256, &point).unwrap();
    let data = put_key::key_data(0x03, std::slice::from_ref(&k));
    let mut want = h("03B041").unwrap();
    want.extend_from_slice(&point);
    want.extend_from_slice(&h("F0010000").unwrap());
    assert_eq!(data, want);
    let (kvn, keys) = put_key::parse_key_data(&data).unwrap();
    assert_eq!((kvn, keys), (0x03, vec![k.clone()]));
    let cmds = put_key::commands(0, 0x10, 0x03, std::slice::from_ref(&k), 255).unwrap();
    assert_eq!(cmds.len(), 1);
    assert_eq!(
        (cmds[0].cla, cmds[0].ins, cmds[0].p1, cmds[0].p2),
        (0x80, 0xD8, 0x00, 0x10)
    );
    assert_eq!(cmds[0].data, data);
    put_key::check_key_data_response(&[0x03], 0x03, std::slice::from_ref(&k)).unwrap();
    assert!(put_key::check_key_data_response(&[0x04], 0x03, std::slice::from_ref(&k)).is_err());
    assert!(put_key::check_key_data_response(&[0x03, 0], 0x03, &[k]).is_err());
}

#[test]
fn rsa_public_key_as_globalplatformpro_and_without_kcv_byte() {
    // GlobalPlatformPro GPSession.putKey(RSAPublicKey): KVN A1 len N A0 len e 00.
    let modulus: Vec<u8> = (0..128u32).map(|i| (i * 7 + 0x81) as u8).collect();
    let mut data = vec![0x70, 0xA1, 0x81, 0x80];
    data.extend_from_slice(&modulus);
    data.extend_from_slice(&h("A003010001").unwrap());
    let want = KeyData::RsaPublic {
        modulus: modulus.clone(),
        exponent: vec![1, 0, 1],
    };
    // Without the final KCV length byte (as some hosts send it) …
    assert_eq!(
        put_key::parse_key_data(&data).unwrap(),
        (0x70, vec![want.clone()])
    );
    // … and with it.
    data.push(0);
    assert_eq!(
        put_key::parse_key_data(&data).unwrap(),
        (0x70, vec![want.clone()])
    );
    assert_eq!(put_key::key_data(0x70, std::slice::from_ref(&want)), data);
    // A modulus cut into two A1 blocks is one modulus.
    let mut split = vec![0x70, 0xA1, 0x40];
    split.extend_from_slice(&modulus[..64]);
    split.extend_from_slice(&[0xA1, 0x40]);
    split.extend_from_slice(&modulus[64..]);
    split.extend_from_slice(&h("A00301000100").unwrap());
    assert_eq!(put_key::parse_key_data(&split).unwrap().1, vec![want]);
}

#[test]
fn rsa_2048_over_short_apdus() {
    let modulus: Vec<u8> = (0..256u32).map(|i| (i * 13 + 0x80) as u8).collect();
    let k = KeyData::rsa_public(&modulus, &[0x01, 0x00, 0x01]).unwrap();
    let cmds = put_key::commands(0x00, 0x01, 0x70, std::slice::from_ref(&k), 255).unwrap();
    assert_eq!(cmds.len(), 2);
    assert_eq!((cmds[0].p1, cmds[1].p1), (0x80, 0x00));
    let mut joined = vec![0x70];
    for c in &cmds {
        assert!(c.data.len() <= 255);
        assert_eq!(c.data[0], 0x70);
        joined.extend_from_slice(&c.data[1..]);
    }
    assert_eq!(put_key::parse_key_data(&joined).unwrap().1, vec![k.clone()]);
    // Unsplit, with extended length: A1 82 0100 N.
    let one = put_key::key_data(0x70, &[k]);
    assert_eq!(one[1..5], [0xA1, 0x82, 0x01, 0x00]);
}

#[test]
fn ecc_private_key_through_a_session() {
    let scalar = h("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721").unwrap();
    for (host, card) in [
        scp03(),
        open(
            &StaticKeys::same(Key::des3(&[0x40; 16]).unwrap()),
            Protocol::Scp02 { i: 0x55 },
        ),
    ] {
        let k = KeyData::ecc_private(Curve::P256, &scalar, &host).unwrap();
        let data = put_key::key_data(0x01, std::slice::from_ref(&k));
        assert_eq!(data[1..3], [0xB1, 0x20]);
        assert!(
            !data.windows(8).any(|w| w == &scalar[..8]),
            "clear scalar sent"
        );
        assert_eq!(data[35..], [0xF0, 0x01, 0x00, 0x00]);
        let (_, keys) = put_key::parse_key_data(&data).unwrap();
        let KeyData::EccPrivate { curve, encrypted } = &keys[0] else {
            panic!("not a private key")
        };
        assert_eq!(*curve, Curve::P256);
        let clear = card.decrypt_secret(encrypted).unwrap();
        assert_eq!(&clear[..32], &scalar[..]);
    }
    // P-384: 48 bytes, three AES blocks.
    let (host, card) = scp03();
    let s384 = vec![0x5A; 48];
    let k = KeyData::ecc_private(Curve::P384, &s384, &host).unwrap();
    let (_, keys) = put_key::parse_key_data(&put_key::key_data(2, &[k])).unwrap();
    let KeyData::EccPrivate { curve, encrypted } = &keys[0] else {
        panic!()
    };
    assert_eq!(*curve, Curve::P384);
    assert_eq!(&card.decrypt_secret(encrypted).unwrap()[..48], &s384[..]);
}

#[test]
fn mixed_secret_and_asymmetric_keys() {
    let (host, card) = scp03();
    let aes = Key::aes(&[0x77; 16]).unwrap();
    let keys = vec![
        KeyData::secret(&aes, &host).unwrap(),
        KeyData::ecc_public(Curve::P256, &h(G256).unwrap()).unwrap(),
    ];
    let data = put_key::key_data(0x21, &keys);
    let (kvn, back) = put_key::parse_key_data(&data).unwrap();
    assert_eq!((kvn, &back), (0x21, &keys));
    let KeyData::Secret(b) = &back[0] else {
        panic!()
    };
    assert_eq!(
        card.decrypt_key(b.kind, &b.encrypted, b.key_len).unwrap(),
        aes
    );
    let mut resp = vec![0x21];
    resp.extend_from_slice(&aes.kcv());
    put_key::check_key_data_response(&resp, 0x21, &keys).unwrap();
    // The symmetric-only parser still reads key sets and refuses asymmetric keys.
    assert!(put_key::parse_key_set_data(&data).is_err());
}

#[test]
fn aes_key_as_yubikit_sends_it() {
    // yubikit put_key(StaticKeys): 88 10 <AES-CBC(DEK, key)> 03 <KCV>, no key-length byte.
    let (host, card) = scp03();
    let aes = Key::aes(&[0x3C; 16]).unwrap();
    let enc = host.encrypt_key(&aes).unwrap();
    let mut data = vec![0x02, 0x88, 0x10];
    data.extend_from_slice(&enc);
    data.push(3);
    data.extend_from_slice(&aes.kcv());
    let (_, keys) = put_key::parse_key_data(&data).unwrap();
    let KeyData::Secret(b) = &keys[0] else {
        panic!()
    };
    assert_eq!((b.key_len, b.kcv.as_slice()), (16, &aes.kcv()[..]));
    assert_eq!(
        card.decrypt_key(b.kind, &b.encrypted, b.key_len).unwrap(),
        aes
    );
}

#[test]
fn asymmetric_parser_errors() {
    use put_key::parse_key_data as p;
    let point = h(G256).unwrap();
    let with = |prefix: &str, suffix: &str| {
        let mut v = h(prefix).unwrap();
        v.extend_from_slice(&point);
        v.extend_from_slice(&h(suffix).unwrap());
        v
    };
    // Good.
    assert!(p(&with("01B041", "F0010000")).is_ok());
    // No F0: the point length says P-256.
    assert_eq!(
        p(&with("01B041", "00")).unwrap().1[0],
        KeyData::EccPublic {
            curve: Curve::P256,
            point: point.clone()
        }
    );
    // Unknown curve reference.
    assert!(matches!(
        p(&with("01B041", "F0010400")),
        Err(Error::Unsupported(_))
    ));
    // Point of the wrong curve, compressed point, F0 of two bytes, a KCV, B0 twice, B0+B1,
    // B0 with A0, RSA without exponent or modulus, zero modulus.
    assert!(p(&with("01B041", "F0010100")).is_err());
    let mut compressed = with("01B041", "F0010000");
    compressed[3] = 0x02;
    assert!(p(&compressed).is_err());
    assert!(p(&with("01B041", "F002000000")).is_err());
    assert!(p(&with("01B041", "F00100030A0B0C")).is_err());
    assert!(p(&with("01B041", "F001008001AA00")).is_err());
    assert!(p(&with(
        "01B041",
        "B1200000000000000000000000000000000000000000000000000000000000000000F0010000"
    ))
    .is_err());
    assert!(p(&with("01B041", "A0010300")).is_err());
    assert!(p(&h("01A1020102 00").unwrap()).is_err());
    assert!(p(&h("01A003010001 00").unwrap()).is_err());
    assert!(p(&h("01A10100A003010001 00").unwrap()).is_err());
    // Encrypted private key of the wrong length.
    assert!(p(&h("01B11000000000000000000000000000000000F0010000").unwrap()).is_err());
    // Truncations never panic.
    let good = with("01B041", "F0010000");
    for n in 0..good.len() - 1 {
        let _ = p(&good[..n]);
    }
}

fn arb_key() -> impl Strategy<Value = KeyData> {
    prop_oneof![
        (0usize..6, prop::collection::vec(any::<u8>(), 133)).prop_map(|(c, bytes)| {
            let curve = Curve::ALL[c];
            let mut point = vec![4];
            point.extend_from_slice(&bytes[..curve.point_len() - 1]);
            KeyData::EccPublic { curve, point }
        }),
        (0usize..6, prop::collection::vec(any::<u8>(), 80)).prop_map(|(c, bytes)| {
            let curve = Curve::ALL[c];
            let n = curve.field_len().div_ceil(16) * 16;
            KeyData::EccPrivate {
                curve,
                encrypted: bytes[..n].to_vec(),
            }
        }),
        (
            prop::collection::vec(any::<u8>(), 1..600),
            prop::collection::vec(any::<u8>(), 1..5)
        )
            .prop_filter_map("non-zero", |(m, e)| KeyData::rsa_public(&m, &e).ok()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn key_data_round_trips(kvn in 1u8..=0x7F, keys in prop::collection::vec(arb_key(), 1..4)) {
        let data = put_key::key_data(kvn, &keys);
        prop_assert_eq!(put_key::parse_key_data(&data).unwrap(), (kvn, keys.clone()));
        // Split over short APDUs and joined again, the same keys.
        for max in [64usize, 255] {
            let cmds = put_key::commands(0, 0x10, kvn, &keys, max).unwrap();
            let mut joined = vec![kvn];
            for (i, c) in cmds.iter().enumerate() {
                prop_assert!(c.data.len() <= max);
                prop_assert_eq!(c.data[0], kvn);
                prop_assert_eq!(c.p1 & 0x80 != 0, i + 1 < cmds.len());
                joined.extend_from_slice(&c.data[1..]);
            }
            prop_assert_eq!(put_key::parse_key_data(&joined).unwrap(), (kvn, keys.clone()));
        }
    }

    #[test]
    fn key_data_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = put_key::parse_key_data(&data);
    }
}
