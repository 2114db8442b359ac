//! End-to-end flows through `select`/`process`, byte for byte as host tools send them.

mod common;

use apdu::tlv::{self, Tag, Tlv};
use apdu::{Command, StatusWord};
use common::*;
use piv::{PivApplet, PivConfig};
use rsa::traits::PublicKeyParts;
use rsa::BoxedUint;
use sha2::{Digest, Sha256, Sha384};
use signature::hazmat::PrehashVerifier;

// ----- selection and identity -----

#[test]
fn select_answers_the_application_property_template() {
    let mut h = Host::new();
    let r = h.select();
    let label = apdu::hex(b"Cardwright PIV");
    let expected = format!(
        "6141 4F06000010000100 79074F05A000000308 500E{label} \
         AC1E 800103 800108 80010A 80010C 800106 800107 800105 800111 800114 060100"
    );
    assert_eq!(r.data, hex(&expected));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    // OpenSC selects with the 9-byte AID and expects the same template.
    let r = h.raw(&hex("00A4040009A00000030800001000 00"));
    assert_eq!(r.data, hex(&expected));
    // P2 = 0C: no response data.
    let r = h.applet.select(&Command::new(0, 0xA4, 4, 0x0C));
    assert!(r.data.is_empty() && r.sw == StatusWord::SUCCESS);
    // Another AID through process() is not ours.
    assert_eq!(h.raw(&hex("00A4040005A000000527")).sw.0, 0x6A82);
}

#[test]
fn version_and_serial() {
    let mut h = Host::new();
    assert_eq!(h.exchange(0xFD, 0, 0, &[]), (vec![5, 4, 3], SW_OK));
    assert_eq!(h.exchange(0xF8, 0, 0, &[]), (hex("00BC614E"), SW_OK));
    assert_eq!(h.applet.serial(), 12_345_678);
}

#[test]
fn discovery_and_chuid_objects() {
    let mut h = Host::new();
    let (d, sw) = h.exchange(0xCB, 0x3F, 0xFF, &hex("5C017E"));
    assert_eq!(sw, SW_OK);
    // SP 800-73-4 Part 1 Table 18: 4F PIV AID, 5F2F PIN usage policy.
    assert_eq!(d, hex("7E12 4F0BA0000003080000100001 00 5F2F024000"));
    let (chuid, sw) = h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC102"));
    assert_eq!(sw, SW_OK);
    assert_eq!(chuid[..7], hex("533B3019D4E739")[..]);
    // Objects not written are not found; printed information needs the PIN.
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC105")).1, 0x6A82);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC109")).1, 0x6982);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC109")).1, 0x6A82);
    // Malformed requests.
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFE, &hex("5C017E")).1, 0x6A86);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C00")).1, 0x6A80);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5D017E")).1, 0x6A80);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C047E000000")).1, 0x6A80);
}

// ----- PIN and PUK -----

#[test]
fn pin_wrong_right_blocked_and_unblocked_with_puk() {
    let mut h = Host::new();
    h.applet.changed();
    let status = |h: &mut Host| h.exchange(0x20, 0x00, 0x80, &[]).1;
    assert_eq!(status(&mut h), 0x63C3);
    assert_eq!(h.verify_pin(b"000000"), 0x63C2);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(h.applet.pin_retries_left(), 3);
    assert_eq!(status(&mut h), SW_OK);
    // Log out (VERIFY P1=FF, SP 800-73-4 Part 2 §3.2.1).
    assert_eq!(h.exchange(0x20, 0xFF, 0x80, &[]).1, SW_OK);
    assert_eq!(status(&mut h), 0x63C3);
    // Not 8 bytes, wrong key reference.
    assert_eq!(h.exchange(0x20, 0x00, 0x80, b"123456").1, 0x6A80);
    assert_eq!(h.exchange(0x20, 0x00, 0x81, &pad(b"12345678")).1, 0x6A88);
    // Block it.
    assert_eq!(h.verify_pin(b"111111"), 0x63C2);
    assert_eq!(h.verify_pin(b"111111"), 0x63C1);
    assert_eq!(h.verify_pin(b"111111"), 0x63C0);
    assert_eq!(h.verify_pin(b"123456"), 0x6983);
    assert_eq!(status(&mut h), 0x6983);
    assert!(h.applet.changed(), "retry counters are persistent");
    // Unblock: wrong PUK counts, right PUK sets the new PIN.
    let mut data = pad(b"87654321");
    data.extend(pad(b"654321"));
    assert_eq!(h.exchange(0x2C, 0x00, 0x80, &data).1, 0x63C2);
    let mut data = pad(b"12345678");
    data.extend(pad(b"65432a"));
    assert_eq!(
        h.exchange(0x2C, 0x00, 0x80, &data).1,
        0x6A80,
        "PIN must be digits"
    );
    let mut data = pad(b"12345678");
    data.extend(pad(b"654321"));
    assert_eq!(h.exchange(0x2C, 0x00, 0x80, &data).1, SW_OK);
    assert_eq!(h.verify_pin(b"654321"), SW_OK);
}

#[test]
fn change_pin_and_puk() {
    let mut h = Host::new();
    let change = |h: &mut Host, p2: u8, old: &[u8], new: &[u8]| {
        let mut d = pad(old);
        d.extend(pad(new));
        h.exchange(0x24, 0x00, p2, &d).1
    };
    assert_eq!(change(&mut h, 0x80, b"000000", b"11223344"), 0x63C2);
    assert_eq!(
        change(&mut h, 0x80, b"123456", b"12345"),
        0x6A80,
        "too short"
    );
    assert_eq!(change(&mut h, 0x80, b"123456", b"11223344"), SW_OK);
    assert_eq!(h.verify_pin(b"123456"), 0x63C2);
    assert_eq!(h.verify_pin(b"11223344"), SW_OK);
    assert_eq!(change(&mut h, 0x81, b"12345678", b"abcdefgh"), SW_OK);
    assert_eq!(change(&mut h, 0x81, b"12345678", b"87654321"), 0x63C2);
    assert_eq!(change(&mut h, 0x82, b"12345678", b"87654321"), 0x6A88);
    assert_eq!(h.exchange(0x24, 0x00, 0x80, &pad(b"11223344")).1, 0x6A80);
}

// ----- management key -----

#[test]
fn management_key_mutual_authentication_3des() {
    let mut h = Host::new();
    let put = hex("5C035FC10753 03 F00100");
    assert_eq!(
        h.exchange(0xDB, 0x3F, 0xFF, &put).1,
        0x6982,
        "needs the management key"
    );
    let mut wrong = DEFAULT_MGMT;
    wrong[0] ^= 0x02;
    assert_eq!(h.authenticate(0x03, &wrong), 0x6982);
    assert_eq!(h.authenticate(0x08, &[0; 16]), 0x6A86, "key is 3DES");
    h.authenticate_default();
    assert_eq!(h.exchange(0xDB, 0x3F, 0xFF, &put).1, SW_OK);
    assert_eq!(
        h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC107")),
        (hex("5303F00100"), SW_OK)
    );
    // A response to a witness that was never sent is refused.
    let mut h = Host::new();
    let mut d = hex("7C148008");
    d.extend([0u8; 8]);
    d.extend(hex("8108"));
    d.extend([0u8; 8]);
    assert_eq!(h.exchange(0x87, 0x03, 0x9B, &d).1, 0x6982);
}

#[test]
fn management_key_external_authentication() {
    // OpenSC's piv_general_external_authenticate: 7C 02 81 00, then 7C 0A 82 08 E(challenge).
    let mut h = Host::new();
    let (resp, sw) = h.exchange(0x87, 0x03, 0x9B, &hex("7C028100"));
    assert_eq!(sw, SW_OK);
    assert_eq!(resp[..4], hex("7C0A8108")[..]);
    let mut c = resp[4..].to_vec();
    host_cipher(0x03, &DEFAULT_MGMT, &mut c, true);
    let mut d = hex("7C0A8208");
    d.extend(&c);
    assert_eq!(h.exchange(0x87, 0x03, 0x9B, &d), (vec![], SW_OK));
    assert_eq!(
        h.exchange(0xDB, 0x3F, 0xFF, &hex("5C035FC1075300")).1,
        SW_OK
    );
    // The challenge is single use.
    assert_eq!(h.exchange(0x87, 0x03, 0x9B, &d).1, 0x6982);
    // OpenSC's GET CHALLENGE uses algorithm 00 (the old 3DES identifier).
    let (resp, sw) = h.exchange(0x87, 0x00, 0x9B, &hex("7C028100"));
    assert_eq!((resp.len(), sw), (12, SW_OK));
}

#[test]
fn set_management_key_to_aes_and_authenticate() {
    for (alg, len) in [(0x08u8, 16usize), (0x0A, 24), (0x0C, 32)] {
        let mut h = Host::new();
        let key: Vec<u8> = (0..len as u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(alg))
            .collect();
        let mut data = vec![alg, 0x9B, len as u8];
        data.extend(&key);
        assert_eq!(h.exchange(0xFF, 0xFF, 0xFF, &data).1, 0x6982);
        h.authenticate_default();
        assert_eq!(h.exchange(0xFF, 0xFF, 0xFF, &data).1, SW_OK);
        h.deselect_and_select();
        assert_eq!(h.authenticate(0x03, &DEFAULT_MGMT), 0x6A86);
        assert_eq!(h.authenticate(alg, &key), SW_OK, "alg {alg:02X}");
        // Metadata reports the AES key, not default.
        let (m, sw) = h.exchange(0xF7, 0x00, 0x9B, &[]);
        assert_eq!(sw, SW_OK);
        assert_eq!(
            m,
            vec![0x01, 0x01, alg, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x00]
        );
    }
    let mut h = Host::new();
    h.authenticate_default();
    assert_eq!(h.exchange(0xFF, 0xFF, 0xFF, &hex("089B10 0011")).1, 0x6A80);
    assert_eq!(
        h.exchange(0xFF, 0xFF, 0xFF, &hex("079B03 001122")).1,
        0x6A80
    );
    assert_eq!(h.exchange(0xFF, 0x00, 0xFF, &hex("039B18")).1, 0x6A86);
}

trait Reselect {
    fn deselect_and_select(&mut self);
}
impl Reselect for Host {
    fn deselect_and_select(&mut self) {
        self.applet.deselect();
        assert_eq!(self.select().sw, StatusWord::SUCCESS);
    }
}

// ----- key generation and use -----

fn generate(h: &mut Host, slot: u8, alg: u8, extra: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x80, 0x01, alg];
    inner.extend_from_slice(extra);
    let data = tlv::encode(Tag::new(0xAC), &inner);
    let (resp, sw) = h.exchange(0x47, 0x00, slot, &data);
    assert_eq!(sw, SW_OK, "generate {alg:02X} in {slot:02X}");
    let (outer, rest) = Tlv::parse_one(&resp).unwrap();
    assert!(rest.is_empty());
    assert_eq!(outer.tag, Tag::new(0x7F49));
    outer.value
}

fn rsa_public(objects: &[u8]) -> rsa::PublicKey {
    let items = tlv::parse_all(objects).unwrap();
    // yubico-piv-tool reads 81 first, then 82.
    assert_eq!(
        items.iter().map(|t| t.tag.value()).collect::<Vec<_>>(),
        [0x81, 0x82]
    );
    let n = BoxedUint::from_be_slice_vartime(&items[0].value);
    let e = BoxedUint::from_be_slice_vartime(&items[1].value);
    assert_eq!(items[1].value, [1, 0, 1]);
    rsa::PublicKey::new(n, e).unwrap()
}

fn ec_point(objects: &[u8], len: usize) -> Vec<u8> {
    let items = tlv::parse_all(objects).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].tag, Tag::new(0x86));
    assert_eq!(items[0].value.len(), len);
    assert_eq!(items[0].value[0], 0x04);
    items[0].value.clone()
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2) for SHA-256, as the host pads before GENERAL AUTHENTICATE.
fn pkcs1_sha256_block(message: &[u8], k: usize) -> Vec<u8> {
    let mut t = hex("3031300d060960864801650304020105000420");
    t.extend(Sha256::digest(message));
    let mut em = vec![0x00, 0x01];
    em.resize(k - t.len() - 1, 0xFF);
    em.push(0x00);
    em.extend(t);
    em
}

#[test]
fn rsa2048_generate_sign_verify() {
    let mut h = Host::new();
    h.authenticate_default();
    // The 270-byte 7F49 answer exceeds Ne = 256: 61 0E then GET RESPONSE.
    let cmd = Command::new(0x00, 0x47, 0x00, 0x9A)
        .with_data(hex("AC03800107"))
        .with_le(256);
    let first = h.applet.process(&cmd);
    assert_eq!(first.data.len(), 256);
    assert_eq!(first.sw.0, 0x610E);
    let rest = h
        .applet
        .process(&Command::new(0x00, 0xC0, 0, 0).with_le(0x0E));
    assert_eq!(rest.sw, StatusWord::SUCCESS);
    let mut resp = first.data;
    resp.extend(rest.data);
    assert_eq!(resp[..5], hex("7F49820109")[..]);
    let public = rsa_public(&resp[5..]);
    assert_eq!(public.size(), 256);

    let block = pkcs1_sha256_block(b"Cardwright", 256);
    let req = dyn_auth_request(0x81, &block);
    assert_eq!(
        h.exchange(0x87, 0x07, 0x9A, &req).1,
        0x6982,
        "9A needs the PIN"
    );
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    let (resp, sw) = h.exchange(0x87, 0x07, 0x9A, &req);
    assert_eq!(sw, SW_OK);
    let sig = dyn_auth_response(&resp);
    assert_eq!(sig.len(), 256);
    public
        .verify(
            rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(),
            &rsa::sha2::Sha256::digest(b"Cardwright"),
            &sig,
        )
        .expect("PKCS#1 v1.5 signature verifies");
    // PIN "once": still usable; algorithm mismatch and wrong sizes are refused.
    assert_eq!(h.exchange(0x87, 0x07, 0x9A, &req).1, SW_OK);
    assert_eq!(h.exchange(0x87, 0x06, 0x9A, &req).1, 0x6A86);
    assert_eq!(
        h.exchange(0x87, 0x07, 0x9A, &dyn_auth_request(0x81, &block[1..]))
            .1,
        0x6A80
    );
    assert_eq!(
        h.exchange(0x87, 0x07, 0x9A, &dyn_auth_request(0x81, &[0xFF; 256]))
            .1,
        0x6A80
    );
    assert_eq!(h.exchange(0x87, 0x07, 0x9C, &req).1, 0x6A88, "empty slot");
    // RSA decryption is the same raw operation: m^e then back.
    let m = BoxedUint::from_be_slice(&block, public.n_bits_precision()).unwrap();
    let c = rsa::hazmat::rsa_encrypt(&public, &m).unwrap();
    let c_bytes = c.to_be_bytes();
    let (resp, sw) = h.exchange(
        0x87,
        0x07,
        0x9A,
        &dyn_auth_request(0x81, &c_bytes[c_bytes.len() - 256..]),
    );
    assert_eq!(sw, SW_OK);
    assert_eq!(dyn_auth_response(&resp), block);
}

#[test]
fn p256_and_p384_generate_sign_verify() {
    let mut h = Host::new();
    h.authenticate_default();
    let p256_point = ec_point(&generate(&mut h, 0x9A, 0x11, &[]), 65);
    let p384_point = ec_point(&generate(&mut h, 0x9E, 0x14, &[]), 97);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);

    let hash = Sha256::digest(b"payment 42.00 EUR");
    let (resp, sw) = h.exchange(0x87, 0x11, 0x9A, &dyn_auth_request(0x81, &hash));
    assert_eq!(sw, SW_OK);
    let sig = p256::ecdsa::Signature::from_der(&dyn_auth_response(&resp)).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p256_point).unwrap();
    vk.verify_prehash(&hash, &sig)
        .expect("P-256 signature verifies");

    // 9E (card authentication) needs no PIN.
    h.applet.deselect();
    h.select();
    let hash = Sha384::digest(b"challenge");
    let (resp, sw) = h.exchange(0x87, 0x14, 0x9E, &dyn_auth_request(0x81, &hash));
    assert_eq!(sw, SW_OK);
    let sig = p384::ecdsa::Signature::from_der(&dyn_auth_response(&resp)).unwrap();
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&p384_point).unwrap();
    vk.verify_prehash(&hash, &sig)
        .expect("P-384 signature verifies");
}

#[test]
fn signature_key_needs_the_pin_immediately_before() {
    let mut h = Host::new();
    h.authenticate_default();
    let point = ec_point(&generate(&mut h, 0x9C, 0x11, &[]), 65);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let hash = Sha256::digest(b"contract");
    let req = dyn_auth_request(0x81, &hash);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    let (resp, sw) = h.exchange(0x87, 0x11, 0x9C, &req);
    assert_eq!(sw, SW_OK);
    let sig = p256::ecdsa::Signature::from_der(&dyn_auth_response(&resp)).unwrap();
    vk.verify_prehash(&hash, &sig).unwrap();
    assert_eq!(
        h.exchange(0x87, 0x11, 0x9C, &req).1,
        0x6982,
        "PIN Always: used up"
    );
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C017E")).1, SW_OK);
    assert_eq!(
        h.exchange(0x87, 0x11, 0x9C, &req).1,
        0x6982,
        "another command came between"
    );
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(
        h.exchange(0xF7, 0x00, 0x9C, &[]).1,
        SW_OK,
        "metadata query in between"
    );
    assert_eq!(h.exchange(0x87, 0x11, 0x9C, &req).1, SW_OK);
    // A slot with PIN policy "never" (YubiKey AA 01).
    generate(&mut h, 0x9D, 0x11, &[0xAA, 0x01, 0x01]);
    h.deselect_and_select();
    assert_eq!(h.exchange(0x87, 0x11, 0x9D, &req).1, SW_OK);
}

#[test]
fn ecdh_with_the_key_management_key() {
    let mut h = Host::new();
    h.authenticate_default();
    let point = ec_point(&generate(&mut h, 0x9D, 0x11, &[]), 65);
    let card_public = p256::PublicKey::from_sec1_bytes(&point).unwrap();
    let host_secret = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    let host_public = {
        use p256::elliptic_curve::sec1::ToSec1Point;
        host_secret
            .public_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec()
    };
    let req = dyn_auth_request(0x85, &host_public);
    assert_eq!(h.exchange(0x87, 0x11, 0x9D, &req).1, 0x6982);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    let (resp, sw) = h.exchange(0x87, 0x11, 0x9D, &req);
    assert_eq!(sw, SW_OK);
    let expected =
        p256::ecdh::diffie_hellman(host_secret.to_nonzero_scalar(), card_public.as_affine());
    assert_eq!(
        dyn_auth_response(&resp),
        expected.raw_secret_bytes().to_vec()
    );
    // A point not on the curve, a compressed point.
    let mut bad = host_public.clone();
    bad[64] ^= 1;
    assert_eq!(
        h.exchange(0x87, 0x11, 0x9D, &dyn_auth_request(0x85, &bad))
            .1,
        0x6A80
    );
    assert_eq!(
        h.exchange(
            0x87,
            0x11,
            0x9D,
            &dyn_auth_request(0x85, &host_public[..33])
        )
        .1,
        0x6A80
    );
}

// ----- large objects: chaining, GET RESPONSE, extended length -----

fn certificate_object(len: usize) -> Vec<u8> {
    let cert: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let mut inner = tlv::encode(Tag::new(0x70), &cert);
    inner.extend(hex("710100FE00"));
    tlv::encode(Tag::new(0x53), &inner)
}

#[test]
fn certificate_over_256_bytes_with_chaining_and_get_response() {
    let mut h = Host::new();
    h.authenticate_default();
    let object = certificate_object(1200);
    let mut data = hex("5C035FC105");
    data.extend(&object);
    assert!(data.len() > 3 * 255);
    h.applet.changed();
    assert_eq!(h.exchange(0xDB, 0x3F, 0xFF, &data), (vec![], SW_OK));
    assert!(h.applet.changed());
    assert!(!h.applet.changed(), "changed() is true once");
    // Short GET DATA: 256 bytes and 61 00 while 256 or more remain.
    let first = h.applet.process(
        &Command::new(0, 0xCB, 0x3F, 0xFF)
            .with_data(hex("5C035FC105"))
            .with_le(256),
    );
    assert_eq!((first.data.len(), first.sw.0), (256, 0x6100));
    let (all, sw) = h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC105"));
    assert_eq!(sw, SW_OK);
    assert_eq!(all, object);
    // Deleting: an empty 53.
    assert_eq!(
        h.exchange(0xDB, 0x3F, 0xFF, &hex("5C035FC1055300")).1,
        SW_OK
    );
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC105")).1, 0x6A82);
}

#[test]
fn extended_length_put_and_get() {
    let mut h = Host::new();
    h.authenticate_default();
    let object = certificate_object(2000);
    let mut data = hex("5C035FC10A");
    data.extend(&object);
    assert_eq!(h.extended(0xDB, 0x3F, 0xFF, &data), (vec![], SW_OK));
    assert_eq!(
        h.extended(0xCB, 0x3F, 0xFF, &hex("5C035FC10A")),
        (object, SW_OK)
    );
}

#[test]
fn chaining_edge_cases() {
    let mut h = Host::new();
    h.authenticate_default();
    // A chain abandoned for another command is dropped.
    let r = h
        .applet
        .process(&Command::new(0x10, 0xDB, 0x3F, 0xFF).with_data(hex("5C035FC105")));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(h.exchange(0xFD, 0, 0, &[]).1, SW_OK);
    assert_eq!(h.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC105")).1, 0x6A82);
    // GET RESPONSE with nothing pending.
    assert_eq!(h.raw(&hex("00C0000000")).sw.0, 0x6985);
    // Over-long chains.
    let piece = vec![0u8; 255];
    let statuses: Vec<u16> = (0..80)
        .map(|_| {
            h.applet
                .process(&Command::new(0x10, 0xDB, 0x3F, 0xFF).with_data(piece.clone()))
                .sw
                .0
        })
        .collect();
    assert_eq!(statuses.iter().position(|&sw| sw == 0x6A84), Some(64));
    h.applet.deselect();
    h.select();
    h.authenticate_default();
    // Objects the card does not allow writing; a truncated container.
    assert_eq!(h.exchange(0xDB, 0x3F, 0xFF, &hex("5C017E7E00")).1, 0x6A80);
    assert_eq!(
        h.exchange(0xDB, 0x3F, 0xFF, &hex("5C035FC1055305AA")).1,
        0x6A80
    );
    assert_eq!(
        h.exchange(0xDB, 0x3F, 0xFF, &hex("5C035FC105710100")).1,
        0x6A80
    );
}

#[test]
fn class_and_instruction_errors() {
    let mut h = Host::new();
    assert_eq!(h.raw(&hex("80CB3FFF00")).sw.0, 0x6E00);
    assert_eq!(h.raw(&hex("0CCB3FFF00")).sw.0, 0x6882);
    assert_eq!(h.raw(&hex("00F9000000")).sw.0, 0x6D00);
    assert_eq!(h.raw(&hex("0087039B017C")).sw.0, 0x6A80);
    assert_eq!(h.raw(&hex("0087039B047C02FF00")).sw.0, 0x6A80);
}

// ----- YubiKey extensions -----

#[test]
fn metadata_of_pin_puk_and_slots() {
    let mut h = Host::new();
    assert_eq!(
        h.exchange(0xF7, 0, 0x80, &[]),
        (hex("0101FF 050101 06020303"), SW_OK)
    );
    assert_eq!(h.verify_pin(b"000000"), 0x63C2);
    assert_eq!(
        h.exchange(0xF7, 0, 0x80, &[]),
        (hex("0101FF 050101 06020302"), SW_OK)
    );
    assert_eq!(
        h.exchange(0xF7, 0, 0x81, &[]),
        (hex("0101FF 050101 06020303"), SW_OK)
    );
    assert_eq!(
        h.exchange(0xF7, 0, 0x9B, &[]),
        (hex("010103 02020001 050101"), SW_OK)
    );
    assert_eq!(h.exchange(0xF7, 0, 0x9A, &[]).1, 0x6A88);
    h.authenticate_default();
    let public = generate(&mut h, 0x9A, 0x11, &[0xAB, 0x01, 0x02]);
    let (m, sw) = h.exchange(0xF7, 0, 0x9A, &[]);
    assert_eq!(sw, SW_OK);
    let mut expected = hex("010111 02020202 030101");
    expected.extend(tlv::encode(Tag::new(0x04), &public));
    assert_eq!(m, expected);
}

#[test]
fn reset_needs_blocked_pin_and_puk() {
    let mut h = Host::new();
    h.authenticate_default();
    generate(&mut h, 0x9A, 0x11, &[]);
    assert_eq!(h.exchange(0xFB, 0, 0, &[]).1, 0x6985);
    for _ in 0..3 {
        h.verify_pin(b"999999");
    }
    assert_eq!(h.exchange(0xFB, 0, 0, &[]).1, 0x6985);
    for _ in 0..3 {
        // ykman blocks the PUK with RESET RETRY COUNTER and empty values.
        h.exchange(0x2C, 0, 0x80, &[0xFF; 16]);
    }
    assert_eq!(h.exchange(0xFB, 0, 0, &[]).1, SW_OK);
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(
        h.exchange(0x87, 0x11, 0x9A, &dyn_auth_request(0x81, &[1; 32]))
            .1,
        0x6A88
    );
    h.authenticate_default();
}

#[test]
fn set_pin_retries() {
    let mut h = Host::new();
    h.authenticate_default();
    assert_eq!(h.exchange(0xFA, 5, 4, &[]).1, 0x6982, "needs the PIN too");
    assert_eq!(h.verify_pin(b"123456"), SW_OK);
    assert_eq!(h.exchange(0xFA, 0, 4, &[]).1, 0x6A86);
    assert_eq!(h.exchange(0xFA, 5, 4, &[]).1, SW_OK);
    assert_eq!(h.verify_pin(b"000000"), 0x63C4);
    assert_eq!(
        h.exchange(0xF7, 0, 0x81, &[]),
        (hex("0101FF 050101 06020404"), SW_OK)
    );
}

// ----- known answers through IMPORT KEY -----

fn import(h: &mut Host, alg: u8, slot: u8, objects: &[u8]) -> u16 {
    h.exchange(0xFE, alg, slot, objects).1
}

#[test]
fn raw_rsa_known_answers() {
    for v in vector_lines(include_str!("vectors/rsa_raw.txt")) {
        let (n, e, d, c, m) = (hex(&v[1]), hex(&v[2]), hex(&v[3]), hex(&v[4]), hex(&v[5]));
        let alg = if n.len() == 128 { 0x06 } else { 0x07 };
        // Recover p and q from (n, e, d) (SP 800-56B Appendix C.2) to build IMPORT KEY data.
        let key = rsa::PrivateKey::from_components(
            BoxedUint::from_be_slice_vartime(&n),
            BoxedUint::from_be_slice_vartime(&e),
            BoxedUint::from_be_slice_vartime(&d),
            vec![],
        )
        .unwrap();
        use rsa::traits::PrivateKeyParts;
        let half = n.len() / 2;
        let fixed = |b: &[u8]| {
            let b: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
            let mut v = vec![0u8; half - b.len()];
            v.extend(b);
            v
        };
        let mut data = Vec::new();
        data.extend(tlv::encode(
            Tag::new(1),
            &fixed(&key.primes()[0].to_be_bytes()),
        ));
        data.extend(tlv::encode(
            Tag::new(2),
            &fixed(&key.primes()[1].to_be_bytes()),
        ));
        data.extend(tlv::encode(
            Tag::new(3),
            &fixed(&key.dp().unwrap().to_be_bytes()),
        ));
        data.extend(tlv::encode(
            Tag::new(4),
            &fixed(&key.dq().unwrap().to_be_bytes()),
        ));
        data.extend(tlv::encode(
            Tag::new(5),
            &fixed(&key.crt_coefficient().unwrap().to_be_bytes()),
        ));
        let mut h = Host::new();
        assert_eq!(import(&mut h, alg, 0x9E, &data), 0x6982);
        h.authenticate_default();
        // CRT values that do not belong to p and q are refused.
        let mut bad = data.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(import(&mut h, alg, 0x9E, &bad), 0x6A80, "{}", v[0]);
        assert_eq!(import(&mut h, alg, 0x9E, &data), SW_OK, "{}", v[0]);
        let (resp, sw) = h.exchange(0x87, alg, 0x9E, &dyn_auth_request(0x81, &c));
        assert_eq!(sw, SW_OK, "{}", v[0]);
        assert_eq!(dyn_auth_response(&resp), m, "{}", v[0]);
        // Metadata: imported, modulus as in the vector.
        let (meta, _) = h.exchange(0xF7, 0, 0x9E, &[]);
        assert_eq!(
            meta[..10],
            [0x01, 0x01, alg, 0x02, 0x02, 0x01, 0x01, 0x03, 0x01, 0x02]
        );
    }
}

#[test]
fn rfc6979_ecdsa_known_answers() {
    for v in vector_lines(include_str!("vectors/ecdsa_rfc6979.txt")) {
        let (curve, d, msg, r, s) = (&v[0], hex(&v[1]), v[2].as_bytes(), hex(&v[3]), hex(&v[4]));
        let (alg, hash) = match curve.as_str() {
            "P-256" => (0x11, Sha256::digest(msg).to_vec()),
            _ => (0x14, Sha384::digest(msg).to_vec()),
        };
        let mut h = Host::new();
        h.authenticate_default();
        assert_eq!(
            import(&mut h, alg, 0x9A, &tlv::encode(Tag::new(6), &d)),
            SW_OK
        );
        assert_eq!(h.verify_pin(b"123456"), SW_OK);
        let (resp, sw) = h.exchange(0x87, alg, 0x9A, &dyn_auth_request(0x81, &hash));
        assert_eq!(sw, SW_OK);
        let sig = dyn_auth_response(&resp);
        let expected = match alg {
            0x11 => p256::ecdsa::Signature::from_scalars(
                <[u8; 32]>::try_from(&r[..]).unwrap(),
                <[u8; 32]>::try_from(&s[..]).unwrap(),
            )
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
            _ => p384::ecdsa::Signature::from_scalars(
                <[u8; 48]>::try_from(&r[..]).unwrap(),
                <[u8; 48]>::try_from(&s[..]).unwrap(),
            )
            .unwrap()
            .to_der()
            .as_bytes()
            .to_vec(),
        };
        assert_eq!(sig, expected, "{curve} {}", v[2]);
    }
}

#[test]
fn ecdh_known_answer() {
    for v in vector_lines(include_str!("vectors/ecdh.txt")) {
        let (d, peer, shared) = (hex(&v[1]), hex(&v[2]), hex(&v[3]));
        let mut h = Host::new();
        h.authenticate_default();
        assert_eq!(
            import(&mut h, 0x11, 0x9D, &tlv::encode(Tag::new(6), &d)),
            SW_OK
        );
        assert_eq!(h.verify_pin(b"123456"), SW_OK);
        let (resp, sw) = h.exchange(0x87, 0x11, 0x9D, &dyn_auth_request(0x85, &peer));
        assert_eq!(sw, SW_OK);
        assert_eq!(dyn_auth_response(&resp), shared);
    }
}

// ----- persistence -----

#[test]
fn state_survives_serialization() {
    let mut h = Host::new();
    assert!(h.applet.changed(), "a new card has state to save");
    assert!(!h.applet.changed());
    h.authenticate_default();
    assert!(
        !h.applet.changed(),
        "authentication changes nothing persistent"
    );
    let rsa_pub = rsa_public(&generate(&mut h, 0x9A, 0x06, &[]));
    let ec_pub = ec_point(&generate(&mut h, 0x9D, 0x14, &[]), 97);
    let mut put = hex("5C035FC105");
    put.extend(certificate_object(300));
    assert_eq!(h.exchange(0xDB, 0x3F, 0xFF, &put).1, SW_OK);
    assert_eq!(h.verify_pin(b"000000"), 0x63C2);
    assert!(h.applet.changed());

    let json = serde_json::to_string(&h.applet).unwrap();
    let debug = format!("{:?}", h.applet);
    assert!(!debug.contains("3132333435"), "Debug does not show the PIN");
    // The card stores it as a serde_json::Value.
    let value = serde_json::to_value(&h.applet).unwrap();
    let via_value: PivApplet = serde_json::from_value(value).unwrap();
    assert_eq!(serde_json::to_string(&via_value).unwrap(), json);
    let restored: PivApplet = serde_json::from_str(&json).unwrap();
    let mut h2 = Host { applet: restored };
    h2.select();
    assert_eq!(h2.applet.pin_retries_left(), 2);
    assert_eq!(
        h2.exchange(0x87, 0x06, 0x9A, &dyn_auth_request(0x81, &[1; 128]))
            .1,
        0x6982
    );
    assert_eq!(h2.verify_pin(b"123456"), SW_OK);
    let block = {
        let mut b = vec![0x00, 0x01];
        b.resize(128, 0x5A);
        b
    };
    let (resp, sw) = h2.exchange(0x87, 0x06, 0x9A, &dyn_auth_request(0x81, &block));
    assert_eq!(sw, SW_OK);
    let s =
        BoxedUint::from_be_slice(&dyn_auth_response(&resp), rsa_pub.n_bits_precision()).unwrap();
    let back = rsa::hazmat::rsa_encrypt(&rsa_pub, &s)
        .unwrap()
        .to_be_bytes();
    assert_eq!(back[back.len() - 128..], block[..]);
    let hash = Sha384::digest(b"x");
    let (resp, sw) = h2.exchange(0x87, 0x14, 0x9D, &dyn_auth_request(0x81, &hash));
    assert_eq!(sw, SW_OK);
    let sig = p384::ecdsa::Signature::from_der(&dyn_auth_response(&resp)).unwrap();
    p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_pub)
        .unwrap()
        .verify_prehash(&hash, &sig)
        .unwrap();
    assert_eq!(
        h2.exchange(0xCB, 0x3F, 0xFF, &hex("5C035FC105")).0,
        put[5..]
    );
    // Security state is not persisted.
    let mut h3 = Host {
        applet: serde_json::from_str(&json).unwrap(),
    };
    h3.select();
    assert_eq!(h3.exchange(0xDB, 0x3F, 0xFF, &put).1, 0x6982);
}

#[test]
fn invalid_configuration_is_an_error() {
    let bad_pin = PivConfig {
        pin: b"12ab56".to_vec(),
        ..PivConfig::default()
    };
    assert!(PivApplet::try_new(bad_pin).is_err());
    let long_puk = PivConfig {
        puk: b"123456789".to_vec(),
        ..PivConfig::default()
    };
    assert!(PivApplet::try_new(long_puk).is_err());
    let no_retries = PivConfig {
        pin_retries: 0,
        ..PivConfig::default()
    };
    assert!(PivApplet::try_new(no_retries).is_err());
    assert!(format!("{:?}", PivConfig::default()).contains("REDACTED"));
}

// ----- transcripts in the exact encodings the tools use -----

#[test]
fn yubico_piv_tool_style_apdus() {
    // libykpiv: SELECT without Le, GET VERSION / GET SERIAL as `Lc = 00`, then
    // commands with a trailing Le = 00 on T=1.
    let mut h = Host::new();
    let r = h.raw(&hex("00A4040005A000000308"));
    assert_eq!((r.data[0], r.sw.0), (0x61, SW_OK));
    assert_eq!(h.raw(&hex("00FD000000")).data, [5, 4, 3]);
    assert_eq!(h.raw(&hex("00F8000000")).data, hex("00BC614E"));
    assert_eq!(
        h.raw(&hex("00F7009B00")).data,
        hex("010103 02020001 050101")
    );
    let r = h.raw(&hex("0087039B047C02800000"));
    assert_eq!((r.data.len(), r.sw.0), (12, SW_OK));
    assert_eq!(
        h.raw(&hex("00200080083132333435360000")).sw.0,
        0x63C2,
        "wrong PIN"
    );
    assert_eq!(h.raw(&hex("0020008008313233343536FFFF00")).sw.0, SW_OK);
    assert_eq!(
        h.raw(&hex("0020FF8000")).sw.0,
        SW_OK,
        "deauthenticate (5.4.3+)"
    );
    assert_eq!(h.raw(&hex("0020008000")).sw.0, 0x63C3);
    let r = h.raw(&hex("00CB3FFF055C035FC10200"));
    assert_eq!((r.data[..2].to_vec(), r.sw.0), (hex("533B"), SW_OK));
}

#[test]
fn opensc_style_apdus() {
    // card-piv.c: SELECT with the 9-byte AID and Le, GET DATA via piv_general_io
    // (case 4, Le = 00), VERIFY Lc = 0 for the login state, logout with P1 = FF.
    let mut h = Host::new();
    let r = h.raw(&hex("00A4040009A0000003080000100000"));
    assert_eq!(r.data[2..10], hex("4F06000010000100")[..]);
    assert_eq!(
        h.raw(&hex("00CB3FFF035C017E00")).data,
        hex("7E124F0BA0000003080000100001005F2F024000")
    );
    assert_eq!(h.raw(&hex("00CB3FFF055C035FC10700")).sw.0, 0x6A82);
    assert_eq!(h.raw(&hex("00CB3FFF055C035FC10C00")).sw.0, 0x6A82);
    assert_eq!(h.raw(&hex("00200080")).sw.0, 0x63C3);
    assert_eq!(h.raw(&hex("0020008008313233343536FFFF")).sw.0, SW_OK);
    assert_eq!(h.raw(&hex("00200080")).sw.0, SW_OK);
    assert_eq!(h.raw(&hex("0020FF80")).sw.0, SW_OK);
    assert_eq!(h.raw(&hex("00200080")).sw.0, 0x63C3);
    // piv_get_challenge: GENERAL AUTHENTICATE 00 9B with an empty challenge.
    let r = h.raw(&hex("0087009B047C02810000"));
    assert_eq!(
        (r.data[..4].to_vec(), r.data.len(), r.sw.0),
        (hex("7C0A8108"), 12, SW_OK)
    );
}

// ----- encodings recorded from the real tools -----
//
// source: yubico-piv-tool 2.2.0 (Debian 12 libykpiv2 2.2.0-1.1, `-v9` trace) and OpenSC
// 0.23.0 (Debian 12, OPENSC_DEBUG=9) driving this applet in `cardwright sim run --vpcd`
// through pcscd + vsmartcard-vpcd (crates/cardwright/tests/piv_tools.rs). Random parts
// (challenges, keys, signatures) are checked by shape only.

#[test]
fn recorded_yubico_piv_tool_2_2_generate_and_rsa_sign() {
    let mut h = Host::new();
    // ykpiv_connect: SELECT with the 5-byte partial AID, no Le.
    let r = h.raw(&hex("00A4040005A000000308"));
    assert_eq!((r.data[..2].to_vec(), r.sw.0), (hex("6141"), SW_OK));
    assert_eq!(h.raw(&hex("0020008000")).sw.0, 0x63C3);
    // Management key: witness request, then witness + challenge, both without Le.
    let r = h.raw(&hex("0087039B047C028000"));
    assert_eq!((r.data[..4].to_vec(), r.data.len()), (hex("7C0A8008"), 12));
    let mut witness = r.data[4..].to_vec();
    host_cipher(0x03, &DEFAULT_MGMT, &mut witness, false);
    let mut cmd = hex("0087039B16 7C14 8008");
    cmd.extend(&witness);
    cmd.extend(hex("8108 3388FB559C479E25"));
    let r = h.raw(&cmd);
    assert_eq!((r.data[..4].to_vec(), r.sw.0), (hex("7C0A8208"), SW_OK));
    // GENERATE without Le: 256 bytes and 61 0E, the rest by GET RESPONSE with Le = 00.
    let r = h.raw(&hex("0047009A05AC03800107"));
    assert_eq!((r.data.len(), r.sw.0), (256, 0x610E));
    assert_eq!(r.data[..9], hex("7F4982010981820100")[..]);
    let rest = h.raw(&hex("00C0000000"));
    assert_eq!((rest.data.len(), rest.sw.0), (14, SW_OK));
    assert_eq!(rest.data[9..], hex("8203010001")[..]);
    let public = rsa_public(&[r.data, rest.data].concat()[5..]);

    // test-signature: VERIFY, then the padded block in two chained GENERAL
    // AUTHENTICATE commands (255 + 11 bytes) without Le; the 264-byte answer comes
    // as 256 bytes and 61 08, then GET RESPONSE.
    assert_eq!(h.raw(&hex("0020008008313233343536FFFF")).sw.0, SW_OK);
    let block = pkcs1_sha256_block(b"recorded", 256);
    let template = dyn_auth_request(0x81, &block);
    assert_eq!(template[..4], hex("7C820106")[..]);
    let (first, second) = template.split_at(255);
    let r = h.raw(&[&hex("1087079AFF")[..], first].concat());
    assert_eq!((r.data.len(), r.sw.0), (0, SW_OK));
    let r = h.raw(&[&hex("0087079A0B")[..], second].concat());
    assert_eq!((r.data.len(), r.sw.0), (256, 0x6108));
    let rest = h.raw(&hex("00C0000000"));
    assert_eq!((rest.data.len(), rest.sw.0), (8, SW_OK));
    let sig = dyn_auth_response(&[r.data, rest.data].concat());
    public
        .verify(
            rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(),
            &rsa::sha2::Sha256::digest(b"recorded"),
            &sig,
        )
        .expect("PKCS#1 v1.5 signature verifies");
}

#[test]
fn recorded_opensc_0_23_probe_and_short_le() {
    let mut h = Host::new();
    // card-piv.c piv_match_card / piv_find_discovery: GET DATA with a short Le first,
    // then again with the length the first answer announced.
    let r = h.raw(&hex("00A4040009A0000003080000100000"));
    assert_eq!(r.sw.0, SW_OK);
    let r = h.raw(&hex("00CB3FFF055C035FC10708"));
    assert_eq!(r.sw.0, 0x6A82, "no CCC");
    let r = h.raw(&hex("00CB3FFF035C017E08"));
    assert_eq!((r.data, r.sw.0), (hex("7E124F0BA0000003"), 0x610C));
    let r = h.raw(&hex("00CB3FFF035C017E14"));
    assert_eq!(
        (r.data, r.sw.0),
        (hex("7E124F0BA0000003080000100001005F2F024000"), SW_OK)
    );
    // CHUID: 8 bytes and 61 35, then the whole 0x3D bytes.
    let r = h.raw(&hex("00CB3FFF055C035FC10208"));
    assert_eq!((r.data[..4].to_vec(), r.sw.0), (hex("533B3019"), 0x6135));
    let r = h.raw(&hex("00CB3FFF055C035FC1023D"));
    assert_eq!((r.data.len(), r.sw.0), (0x3D, SW_OK));
    // Printed Information needs the PIN (SP 800-73-4 Part 1 Table 3).
    assert_eq!(h.raw(&hex("00CB3FFF055C035FC10908")).sw.0, 0x6982);
    assert_eq!(h.raw(&hex("00200080")).sw.0, 0x63C3);
}
