//! SCP11 against the virtual card, in process (GP Amendment F): SCP11b out of the box with
//! the factory key set and `scp::scp11`'s host, SCP11a/c after loading a trust anchor and an
//! OCE chain (PERFORM SECURITY OPERATION, chained), every refused certificate with its
//! status word and no session after it, receipt tampering, failure counting, persistence,
//! and a card made without SCP11.

mod common;

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, VirtualCard};
use common::*;
use gp::cert::{GpCertificateBody, GpDate, KEY_USAGE_KEY_AGREEMENT};
use gp::scp11::{
    CertificateBundle, GetCertificates, KeyRef, PerformSecurityOperation, Scp11StoreData,
};
use scp::put_key::{self, KeyData};
use scp::scp11::{Curve, HostAuth, Params, PrivateKey, PublicKey, Variant};
use scp::SecurityLevel;

/// Sends a command and collects a long answer with GET RESPONSE (`61xx`).
fn long(host: &mut Host, c: &Command) -> Response {
    let wrapped = match host.session.as_mut() {
        Some(s) => s.wrap(c).unwrap(),
        None => c.clone(),
    };
    let mut r = host.raw(&wrapped);
    let mut data = std::mem::take(&mut r.data);
    while r.sw.sw1() == 0x61 {
        r = host.raw(&cmd("00C0000000"));
        data.extend_from_slice(&r.data);
    }
    let r = Response::new(data, r.sw);
    match host.session.as_mut() {
        Some(s) => s.unwrap(r).unwrap(),
        None => r,
    }
}

/// The factory SCP11b chain: GET DATA BF21 A6{83 13 01}, checked against the manufacturer CA.
fn factory_pk_sd(host: &mut Host) -> PublicKey {
    let r = long(
        host,
        &GetCertificates {
            key: KeyRef::new(0x13, 0x01),
        }
        .to_command(),
    );
    assert_eq!(r.sw, StatusWord::SUCCESS);
    let bundle = CertificateBundle::parse(&r.data).unwrap();
    assert_eq!(bundle.0.len(), 2, "manufacturer CA, SD certificate");
    assert_eq!(Some(bundle.0[0].clone()), host.card.manufacturer_ca());
    let chain = gp::cert::parse_chain(&bundle.0).unwrap();
    let ca = chain[0].public_key().clone();
    // The CA is self-signed; the SD certificate is signed by it and allows key agreement.
    assert!(chain[0].verify_signature(&ca));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let policy = gp::cert::ChainPolicy {
        at: Some(now),
        ..Default::default()
    };
    gp::cert::verify_chain(&chain[1..], &ca, &policy)
        .unwrap()
        .clone()
}

/// Runs MUTUAL/INTERNAL AUTHENTICATE and installs the host session.
fn authenticate(
    host: &mut Host,
    params: Params,
    pk_sd: &PublicKey,
    oce: Option<&PrivateKey>,
) -> Result<(), scp::Error> {
    host.session = None;
    let auth = HostAuth::new(params, pk_sd).unwrap();
    let r = host.raw(&auth.command());
    let session = auth.finish(
        &r,
        pk_sd,
        oce.map(|k| k as &dyn scp::scp11::OceKeyAgreement),
    )?;
    host.session = Some(session);
    Ok(())
}

#[test]
fn scp11b_out_of_the_box() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    // Card recognition data announces SCP03 and SCP11b (tags 06 60 63 64 64 as yubikit checks).
    let r = host.raw(&cmd("80CA006600"));
    let cd = gp::commands::CardData::parse(&r.data).unwrap();
    assert_eq!(
        cd.scp.iter().map(|s| (s.scp, s.i)).collect::<Vec<_>>(),
        vec![(0x03, 0x70), (0x11, 0x00)]
    );
    let pk_sd = factory_pk_sd(&mut host);
    authenticate(&mut host, Params::new(Variant::B, 0x01), &pk_sd, None).unwrap();
    assert_eq!(host.session.as_ref().unwrap().level(), SecurityLevel(0x33));
    // Reading works (GET STATUS, GET DATA) through the session …
    let r = host.send(&cmd("80F28002024F0000"));
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(host.send(&cmd("80CA00E000")).sw, StatusWord::SUCCESS);
    // … but SCP11b does not authenticate the host: no management (6982).
    let k = KeyData::ecc_public(put_key::Curve::P256, pk_sd.to_sec1()).unwrap();
    let c = &put_key::commands(0, 0x10, 0x05, &[k], 255).unwrap()[0];
    assert_eq!(host.send(c).sw, StatusWord::SECURITY_NOT_SATISFIED);
    // A request for the wrong variant with KID 13 (MUTUAL AUTHENTICATE): refused.
    host.session = None;
    let auth = HostAuth::new(
        Params {
            kid: 0x13,
            ..Params::new(Variant::A, 0x01)
        },
        &pk_sd,
    )
    .unwrap();
    assert_eq!(host.raw(&auth.command()).sw, StatusWord::INCORRECT_P1P2);
    // Unknown key version: 6A88.
    let auth = HostAuth::new(Params::new(Variant::B, 0x02), &pk_sd).unwrap();
    assert_eq!(
        host.raw(&auth.command()).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
}

#[test]
fn receipt_tamper_is_detected_by_the_host() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    let pk_sd = factory_pk_sd(&mut host);
    let auth = HostAuth::new(Params::new(Variant::B, 0x01), &pk_sd).unwrap();
    let mut r = host.raw(&auth.command());
    assert_eq!(r.sw, StatusWord::SUCCESS);
    let n = r.data.len();
    r.data[n - 1] ^= 1;
    assert_eq!(
        auth.finish(&r, &pk_sd, None).unwrap_err(),
        scp::Error::ReceiptMismatch
    );
    // With another PK.SD (a key the card does not hold), the receipt does not verify either.
    let other = PrivateKey::generate(Curve::P256).unwrap();
    let auth = HostAuth::new(Params::new(Variant::B, 0x01), other.public_key()).unwrap();
    let r = host.raw(&auth.command());
    assert!(auth.finish(&r, other.public_key(), None).is_err());
}

/// The OCE side of 11a/11c: a CA (the trust anchor PK.CA-KLOC), an intermediate KA
/// certificate and the OCE leaf (GP format), as in Amendment F's examples.
struct Oce {
    ca: PrivateKey,
    ka: PrivateKey,
    key: PrivateKey,
}

fn body(subject: &PrivateKey, ca_id: &[u8], id: &[u8], usage: &[u8]) -> GpCertificateBody {
    GpCertificateBody {
        serial: id.to_vec(),
        ca_id: ca_id.to_vec(),
        subject_id: id.to_vec(),
        key_usage: usage.to_vec(),
        effective: Some(GpDate::new(2025, 1, 1)),
        expiry: GpDate::new(2099, 12, 31),
        discretionary: None,
        restrictions: None,
        public_key: subject.public_key().clone(),
    }
}

impl Oce {
    fn new() -> Self {
        Oce {
            ca: PrivateKey::generate(Curve::P256).unwrap(),
            ka: PrivateKey::generate(Curve::P256).unwrap(),
            key: PrivateKey::generate(Curve::P256).unwrap(),
        }
    }
    fn ka_cert(&self) -> Vec<u8> {
        body(&self.ka, b"CA-KLOC", b"KA-KLOC", &[0x00, 0x82])
            .sign(&self.ca)
            .unwrap()
            .to_bytes()
            .to_vec()
    }
    fn leaf(&self, f: impl FnOnce(&mut GpCertificateBody)) -> Vec<u8> {
        let mut b = body(&self.key, b"KA-KLOC", b"OCE-01", &KEY_USAGE_KEY_AGREEMENT);
        f(&mut b);
        b.sign(&self.ka).unwrap().to_bytes().to_vec()
    }
    fn chain(&self) -> Vec<Vec<u8>> {
        vec![self.ka_cert(), self.leaf(|_| {})]
    }
}

/// An SCP03 session to the ISD, then: a new SD key pair (GENERATE EC KEY) under `kid`/`kvn`
/// and the OCE trust anchor (PUT KEY ECC public key, KID 10) with the same KVN, as yubikit
/// loads them. Returns PK.SD.
fn load_scp11(host: &mut Host, oce: &Oce, kid: u8, kvn: u8) -> PublicKey {
    host.select(ISD);
    host.open(&default_keys(true), 0x30, SecurityLevel(0x33))
        .unwrap();
    let r = host.send(
        &Command::new(0x80, 0xF1, 0x00, kid)
            .with_data(vec![kvn, 0xF0, 0x01, 0x00])
            .with_le(256),
    );
    assert_eq!(r.sw, StatusWord::SUCCESS);
    assert_eq!(r.data[..2], [0xB0, 0x41]);
    let pk_sd = PublicKey::from_sec1(Curve::P256, &r.data[2..]).unwrap();
    let anchor = KeyData::ecc_public(put_key::Curve::P256, oce.ca.public_key().to_sec1()).unwrap();
    for c in put_key::commands(0, 0x10, kvn, &[anchor], 255).unwrap() {
        let r = host.send(&c);
        assert_eq!((r.sw, r.data), (StatusWord::SUCCESS, vec![kvn]));
    }
    host.select(ISD);
    pk_sd
}

fn pso(host: &mut Host, kvn: u8, chain: &[Vec<u8>]) -> StatusWord {
    for p in PerformSecurityOperation::for_chain(kvn, 0x10, chain) {
        for c in p.to_short_commands().unwrap() {
            let r = host.raw(&c);
            if !r.is_success() {
                return r.sw;
            }
        }
    }
    StatusWord::SUCCESS
}

#[test]
fn scp11a_and_scp11c_after_loading_keys() {
    for (variant, kid) in [(Variant::A, 0x11), (Variant::C, 0x15)] {
        let mut host = Host::new(VirtualCard::new(CardConfig::default()));
        let oce = Oce::new();
        let pk_sd = load_scp11(&mut host, &oce, kid, 0x03);
        // Without the OCE chain, 11a/11c is refused and opens nothing.
        let auth = HostAuth::new(Params::new(variant, 0x03), &pk_sd).unwrap();
        assert_eq!(
            host.raw(&auth.command()).sw,
            StatusWord::SECURITY_NOT_SATISFIED
        );
        assert_eq!(pso(&mut host, 0x03, &oce.chain()), StatusWord::SUCCESS);
        authenticate(
            &mut host,
            Params::new(variant, 0x03),
            &pk_sd,
            Some(&oce.key),
        )
        .unwrap();
        // The OCE is authenticated: key management works, PUT KEY under S-DEK.
        let aes = scp::Key::aes(&[0x5A; 16]).unwrap();
        let k = KeyData::secret(&aes, host.session.as_ref().unwrap()).unwrap();
        let keys = [k.clone(), k.clone(), k];
        let c = &put_key::commands(0, 0x01, 0x31, &keys, 255).unwrap()[0];
        let r = host.send(c);
        assert_eq!(r.sw, StatusWord::SUCCESS, "{variant}");
        put_key::check_key_data_response(&r.data, 0x31, &keys).unwrap();
        assert_eq!(host.send(&cmd("80F28002024F0000")).sw, StatusWord::SUCCESS);
        // The new SCP03 key set works.
        host.select(ISD);
        host.open(&scp::StaticKeys::same(aes), 0x31, SecurityLevel(0x01))
            .unwrap();
        // The verified OCE key was used up: another MUTUAL AUTHENTICATE needs a new chain.
        host.select(ISD);
        let auth = HostAuth::new(Params::new(variant, 0x03), &pk_sd).unwrap();
        assert_eq!(
            host.raw(&auth.command()).sw,
            StatusWord::SECURITY_NOT_SATISFIED
        );
    }
}

#[test]
fn chained_pso_of_a_long_certificate() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    let oce = Oce::new();
    let pk_sd = load_scp11(&mut host, &oce, 0x11, 0x03);
    let leaf = oce.leaf(|b| b.discretionary = Some((0x53, vec![0xD5; 400])));
    assert!(leaf.len() > 255);
    let p = &PerformSecurityOperation::for_chain(0x03, 0x10, std::slice::from_ref(&leaf))[0];
    assert!(p.to_short_commands().unwrap().len() >= 2);
    assert_eq!(
        pso(&mut host, 0x03, &[oce.ka_cert(), leaf]),
        StatusWord::SUCCESS
    );
    authenticate(
        &mut host,
        Params::new(Variant::A, 0x03),
        &pk_sd,
        Some(&oce.key),
    )
    .unwrap();
}

#[test]
fn bad_certificates_are_refused_and_open_nothing() {
    let oce = Oce::new();
    let other = PrivateKey::generate(Curve::P256).unwrap();
    let cases: Vec<(&str, Vec<Vec<u8>>, StatusWord)> = vec![
        (
            "expired",
            vec![
                oce.ka_cert(),
                oce.leaf(|b| b.expiry = GpDate::new(2020, 1, 1)),
            ],
            StatusWord::SECURITY_NOT_SATISFIED,
        ),
        (
            "not yet valid",
            vec![
                oce.ka_cert(),
                oce.leaf(|b| b.effective = Some(GpDate::new(2090, 1, 1))),
            ],
            StatusWord::SECURITY_NOT_SATISFIED,
        ),
        (
            "wrong signature",
            vec![
                oce.ka_cert(),
                body(&oce.key, b"KA-KLOC", b"OCE-01", &KEY_USAGE_KEY_AGREEMENT)
                    .sign(&other)
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            ],
            StatusWord::SECURITY_NOT_SATISFIED,
        ),
        (
            "broken link",
            vec![
                oce.ka_cert(),
                oce.leaf(|b| b.ca_id = b"SOMEONE-ELSE".to_vec()),
            ],
            StatusWord::SECURITY_NOT_SATISFIED,
        ),
        (
            "no key agreement",
            vec![oce.ka_cert(), oce.leaf(|b| b.key_usage = vec![0x00, 0x02])],
            StatusWord::WRONG_DATA,
        ),
        (
            "malformed",
            vec![vec![0x7F, 0x21, 0x01, 0x00]],
            StatusWord::WRONG_DATA,
        ),
    ];
    for (what, chain, sw) in cases {
        let mut host = Host::new(VirtualCard::new(CardConfig::default()));
        let pk_sd = load_scp11(&mut host, &oce, 0x11, 0x03);
        assert_eq!(pso(&mut host, 0x03, &chain), sw, "{what}");
        let auth = HostAuth::new(Params::new(Variant::A, 0x03), &pk_sd).unwrap();
        let r = host.raw(&auth.command());
        assert_eq!(
            r.sw,
            StatusWord::SECURITY_NOT_SATISFIED,
            "{what}: no session"
        );
        assert_eq!(
            host.raw(&cmd("84F28002024F0000")).sw,
            StatusWord::SECURITY_NOT_SATISFIED
        );
    }
    // Unknown trust anchor: 6A88.
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    load_scp11(&mut host, &oce, 0x11, 0x03);
    assert_eq!(
        pso(&mut host, 0x04, &oce.chain()),
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
}

#[test]
fn allowlist_and_ca_issuer() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    let oce = Oce::new();
    let pk_sd = load_scp11(&mut host, &oce, 0x11, 0x03);
    // STORE DATA (yubikit's formats) inside an SCP03 session: allowlist without our serial,
    // CA issuer identifier.
    host.open(&default_keys(true), 0x30, SecurityLevel(0x33))
        .unwrap();
    // As yubikit sends it: CLA 00 (ISO class).
    let store = |host: &mut Host, d: Scp11StoreData| host.send(&d.to_command()).sw;
    let allow = |serials: Vec<Vec<u8>>| Scp11StoreData::Allowlist {
        key: KeyRef::new(0x10, 0x03),
        serials,
    };
    assert_eq!(
        store(&mut host, allow(vec![vec![1], vec![2]])),
        StatusWord::SUCCESS
    );
    let ca_id = Scp11StoreData::CaIssuer {
        key: KeyRef::new(0x10, 0x03),
        klcc: false,
        id: b"CA-KLOC".to_vec(),
    };
    assert_eq!(store(&mut host, ca_id), StatusWord::SUCCESS);
    let r = host.send(&cmd("80CAFF3300"));
    assert_eq!(apdu::hex(&r.data), "420743412D4B4C4F4383021003");
    host.select(ISD);
    assert_eq!(
        pso(&mut host, 0x03, &oce.chain()),
        StatusWord::SECURITY_NOT_SATISFIED
    );
    // Allowlisted: accepted.
    host.open(&default_keys(true), 0x30, SecurityLevel(0x33))
        .unwrap();
    assert_eq!(
        store(&mut host, allow(vec![b"OCE-01".to_vec()])),
        StatusWord::SUCCESS
    );
    host.select(ISD);
    assert_eq!(pso(&mut host, 0x03, &oce.chain()), StatusWord::SUCCESS);
    authenticate(
        &mut host,
        Params::new(Variant::A, 0x03),
        &pk_sd,
        Some(&oce.key),
    )
    .unwrap();
    // A chain naming another CA than the stored issuer identifier: broken link.
    host.select(ISD);
    let ka = body(&oce.ka, b"OTHER-CA", b"KA-KLOC", &[0x00, 0x82])
        .sign(&oce.ca)
        .unwrap()
        .to_bytes()
        .to_vec();
    assert_eq!(
        pso(&mut host, 0x03, &[ka, oce.leaf(|_| {})]),
        StatusWord::SECURITY_NOT_SATISFIED
    );
    // Certificate store of the new key pair: STORE DATA BF21, then GET DATA BF21.
    host.open(&default_keys(true), 0x30, SecurityLevel(0x33))
        .unwrap();
    let bundle = Scp11StoreData::CertificateBundle {
        key: KeyRef::new(0x11, 0x03),
        certificates: oce.chain(),
    };
    assert_eq!(store(&mut host, bundle), StatusWord::SUCCESS);
    let r = long(
        &mut host,
        &GetCertificates {
            key: KeyRef::new(0x11, 0x03),
        }
        .to_command(),
    );
    assert_eq!(CertificateBundle::parse(&r.data).unwrap().0, oce.chain());
    // Deleting the keys of KVN 03 (yubikit: delete_key(kvn=3), P2 01, D2 03) drops the key
    // pair's chain, the trust anchor and its allowlist and CA identifier.
    assert_eq!(
        host.send(&cmd("80E4000103D2010300")).sw,
        StatusWord::SUCCESS
    );
    let r = host.send(
        &GetCertificates {
            key: KeyRef::new(0x11, 0x03),
        }
        .to_command(),
    );
    assert_eq!(r.sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    assert_eq!(
        host.send(&cmd("80CAFF3300")).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
}

#[test]
fn failed_authentications_block_the_key() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.select(ISD);
    let pk_sd = factory_pk_sd(&mut host);
    // yubikit's reset: INTERNAL AUTHENTICATE with garbage until the key is blocked.
    for _ in 0..10 {
        let r = host.raw(&cmd("8088011308000000000000000000"));
        assert_eq!(r.sw, StatusWord::WRONG_DATA);
    }
    assert_eq!(
        host.raw(&cmd("8088011308000000000000000000")).sw,
        StatusWord::AUTH_METHOD_BLOCKED
    );
    let auth = HostAuth::new(Params::new(Variant::B, 0x01), &pk_sd).unwrap();
    assert_eq!(
        host.raw(&auth.command()).sw,
        StatusWord::AUTH_METHOD_BLOCKED
    );
    // The SCP03 key set is not affected, nor SCP03 keys added under the same KVN 01 (as
    // the issuance flow writes its key set 01): failures count per SCP11 key.
    host.open(&default_keys(true), 0x30, SecurityLevel(0x01))
        .unwrap();
    assert!(host.put_keys(0x00, 0x01, &aes_keys()).is_success());
    host.select(ISD);
    host.open(&aes_keys(), 0x01, SecurityLevel(0x01)).unwrap();
    host.select(ISD);
    let auth = HostAuth::new(Params::new(Variant::B, 0x01), &pk_sd).unwrap();
    assert_eq!(
        host.raw(&auth.command()).sw,
        StatusWord::AUTH_METHOD_BLOCKED
    );
}

#[test]
fn keys_and_chain_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let oce = Oce::new();
    let (pk_factory, pk_sd) = {
        let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
        host.select(ISD);
        let f = factory_pk_sd(&mut host);
        (f, load_scp11(&mut host, &oce, 0x11, 0x03))
    };
    let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
    host.select(ISD);
    assert_eq!(factory_pk_sd(&mut host), pk_factory);
    authenticate(&mut host, Params::new(Variant::B, 0x01), &pk_factory, None).unwrap();
    host.select(ISD);
    assert_eq!(pso(&mut host, 0x03, &oce.chain()), StatusWord::SUCCESS);
    authenticate(
        &mut host,
        Params::new(Variant::A, 0x03),
        &pk_sd,
        Some(&oce.key),
    )
    .unwrap();
    // The private key is in the state file, never in Debug output.
    assert!(!format!("{:?}", host.card).contains(&apdu::hex(pk_sd.to_sec1())));
}

#[test]
fn a_card_without_scp11() {
    let mut host = Host::new(VirtualCard::new(CardConfig {
        scp11: false,
        ..CardConfig::default()
    }));
    host.select(ISD);
    assert_eq!(host.card.manufacturer_ca(), None);
    let r = host.raw(
        &GetCertificates {
            key: KeyRef::new(0x13, 0x01),
        }
        .to_command(),
    );
    assert_eq!(r.sw, StatusWord::REFERENCED_DATA_NOT_FOUND);
    let k = PrivateKey::generate(Curve::P256).unwrap();
    let auth = HostAuth::new(Params::new(Variant::B, 0x01), k.public_key()).unwrap();
    assert_eq!(
        host.raw(&auth.command()).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
    let r = host.raw(&cmd("80CA006600"));
    let cd = gp::commands::CardData::parse(&r.data).unwrap();
    assert_eq!(cd.scp.len(), 1);
    assert_eq!(
        host.raw(&cmd("80CA00E000")).data,
        h("E012C00401308810C00402308810C00403308810")
    );
    // PSO without a trust anchor: 6A88.
    assert_eq!(
        host.raw(&Command::new(0x80, 0x2A, 0x01, 0x10).with_data(vec![0x30, 0x00]))
            .sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
}
