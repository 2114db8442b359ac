//! The registration applet (`card::registration`) driven as a host drives it: installed
//! from its CAP file, key pairs generated on the card and certified, AES keys loaded
//! encrypted under the secure channel's DEK (SCP03 and SCP02), signatures and MACs checked
//! with independent implementations, registration ended by SET STATUS, state kept across a
//! restart.

mod common;

use apdu::{Command, Response, StatusWord};
use card::registration::{aes_key_dgi, certificate_dgi, ins, PERSONALIZED};
use card::{CardConfig, VirtualCard};
use common::*;
use gp::commands::dgi::{dgi_store_data, Dgi};
use gp::commands::Install;
use scp::SecurityLevel;

/// The committed CAP file of the registration applet (see `crates/gp/tests/data/SOURCES.md`).
const CAP_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../gp/tests/data/cardwright_registration.cap"
);
const PKG: &str = "F043574B41";
const MODULE: &str = "F043574B4101";
const APP: &str = "F043574B410101";

/// The registration applet's CAP file, built the way the storage applet's test CAPs are
/// (`gp::cap::testing::cap_archive`): a structurally valid Java Card 2.2 CAP (JCVM spec
/// §6: Header, Directory, Import, Applet, Class, Method, StaticField, ConstantPool,
/// RefLocation, Descriptor) of package `F0 43 57 4B 41` v1.0 `cardwright/registration`
/// with the one applet `F0 43 57 4B 41 01`, importing `javacard.framework` 1.2. Its
/// bytecode does nothing: the virtual card runs the built-in applet for this package.
fn registration_cap() -> Vec<u8> {
    use gp::cap::ComponentTag::*;
    let pkg = card::applet::REGISTRATION_PACKAGE;
    let module = card::applet::REGISTRATION_MODULE;
    let component = |tag: gp::cap::ComponentTag, info: &[u8]| {
        let mut v = vec![tag.tag()];
        v.extend_from_slice(&(info.len() as u16).to_be_bytes());
        v.extend_from_slice(info);
        (tag, v)
    };
    let name = b"cardwright/registration";
    // Header (§6.4): magic, CAP 2.2, flags ACC_APPLET, package 1.0, AID, name.
    let mut header = vec![0xDE, 0xCA, 0xFF, 0xED, 0x02, 0x02, 0x04, 0x00, 0x01];
    header.push(pkg.len() as u8);
    header.extend_from_slice(pkg);
    header.push(name.len() as u8);
    header.extend_from_slice(name);
    // Applet component (§6.5): count, AID, install method offset.
    let mut applets = vec![1, module.len() as u8];
    applets.extend_from_slice(module);
    applets.extend_from_slice(&[0x00, 0x01]);
    // Import component (§6.6): javacard.framework 1.2.
    let imports = [
        1, 0x02, 0x01, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x01, 0x01,
    ];
    let comps = vec![
        component(Header, &header),
        component(Directory, &[0u8; 31]),
        component(Import, &imports),
        component(Applet, &applets),
        component(Class, &[0u8; 12]),
        component(Method, &[0x00, 0x18, 0x8C, 0x7A]),
        component(StaticField, &[0u8; 10]),
        component(ConstantPool, &[0x00, 0x00]),
        component(RefLocation, &[0u8; 4]),
        component(Descriptor, &[0u8; 4]),
    ];
    gp::cap::testing::cap_archive("cardwright/registration", &comps, true)
}

/// The committed file is exactly what [`registration_cap`] makes (the zip writer stores no
/// time: entries carry the 1980 default date). `CARDWRIGHT_WRITE_TEST_DATA=1` rewrites it.
#[test]
fn committed_cap_is_the_generated_one() {
    let made = registration_cap();
    if std::env::var("CARDWRIGHT_WRITE_TEST_DATA").is_ok_and(|v| v == "1") {
        std::fs::write(CAP_PATH, &made).unwrap();
    }
    let committed = std::fs::read(CAP_PATH).expect("the committed CAP file");
    assert_eq!(
        committed, made,
        "regenerate with CARDWRIGHT_WRITE_TEST_DATA=1"
    );
    let cap = gp::cap::CapFile::from_bytes(&committed).unwrap();
    assert_eq!(cap.package_aid(), aid(PKG));
    assert_eq!(cap.applet_aids(), vec![aid(MODULE)]);
    assert_eq!(cap.package_name(), Some("cardwright/registration"));
}

/// A card with the registration applet installed from its CAP as `APP`, and a host with a
/// secure channel open to the ISD.
fn installed(config: CardConfig) -> Host {
    let aes = matches!(config.protocol, scp::Protocol::Scp03 { .. });
    let mut host = Host::new(VirtualCard::new(config));
    open_isd(&mut host, aes);
    let cap = gp::cap::CapFile::from_bytes(&std::fs::read(CAP_PATH).unwrap()).unwrap();
    let r = host.load(PKG, None, &cap.load_file_data_block(), Vec::new());
    assert!(r.is_success(), "{r:?}");
    assert!(host.install_app(PKG, MODULE, APP, [0, 0, 0]).is_success());
    host
}

fn open_isd(host: &mut Host, aes: bool) {
    host.select(ISD);
    host.open(&default_keys(aes), 0, SecurityLevel::MAC_ENC)
        .unwrap();
}

/// Selects the instance and sends `c` to it (no secure messaging: the applet's commands
/// are plain), with GET RESPONSE on `61xx` as a reader's host does.
fn app(host: &mut Host, c: Command) -> Response {
    assert!(host.select(APP).is_success());
    apdu::exchange(&c, |bytes| Ok::<_, ()>(host.card.transmit(bytes))).unwrap()
}

fn generate(host: &mut Host, slot: u8) -> Response {
    app(
        host,
        Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, slot).with_le(256),
    )
}

/// The public key point from GENERATE KEY PAIR's `7F49 { 86 point }`.
fn point(r: &Response) -> Vec<u8> {
    assert!(r.is_success(), "{r:?}");
    let t = apdu::tlv::TlvRef::parse(&r.data).unwrap();
    assert_eq!(t.tag(), apdu::tlv::Tag::new(0x7F49));
    let inner = apdu::tlv::TlvRef::parse(t.value()).unwrap();
    assert_eq!(inner.tag(), apdu::tlv::Tag::new(0x86));
    assert_eq!(inner.value().len(), 65);
    inner.value().to_vec()
}

/// An X.509 certificate for `point` from a test CA (ECDSA P-256).
fn certificate(ca: &pki::SoftwareSigner, point: &[u8]) -> Vec<u8> {
    let pk = scp::scp11::PublicKey::from_sec1(scp::scp11::Curve::P256, point).unwrap();
    let params = pki::scp11::CertificateParams::new(
        pki::Subject::new("registration slot"),
        time::OffsetDateTime::now_utc(),
        None,
    );
    pki::scp11::ecka_certificate(
        ca,
        &pki::Subject::new("outlet CA"),
        &pk.to_spki_der().unwrap(),
        &params,
    )
    .unwrap()
}

/// INSTALL [for personalization] of the instance and STORE DATA of `dgis` (values of
/// `8xxx` DGIs encrypted by the caller), through the ISD's secure channel.
fn personalize(host: &mut Host, aes: bool, dgis: &[Dgi]) -> Response {
    open_isd(host, aes);
    let r = host.install(Install::ForPersonalization {
        application: aid(APP),
    });
    assert!(r.is_success(), "{r:?}");
    let max = host.session.as_ref().unwrap().max_plain_len(255);
    let mut last = Response::ok(vec![]);
    for sd in dgi_store_data(dgis, max).unwrap() {
        last = host.send(&sd.to_command().unwrap());
        if !last.is_success() {
            break;
        }
    }
    last
}

/// The DEK of the open session, as a key store would get it.
fn dek(host: &Host) -> scp::Key {
    host.session
        .as_ref()
        .unwrap()
        .data_encryption_key()
        .unwrap()
}

/// AES-CMAC with the RustCrypto `cmac` crate (independent of `scp`'s).
fn independent_cmac(key: &[u8], m: &[u8]) -> Vec<u8> {
    use cmac::{KeyInit, Mac};
    match key.len() {
        16 => {
            let mut c = <cmac::Cmac<aes::Aes128> as KeyInit>::new_from_slice(key).unwrap();
            c.update(m);
            c.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut c = <cmac::Cmac<aes::Aes256> as KeyInit>::new_from_slice(key).unwrap();
            c.update(m);
            c.finalize().into_bytes().to_vec()
        }
    }
}

#[test]
fn registration_over_scp03() {
    let mut host = installed(CardConfig::default());
    let ca = pki::SoftwareSigner::generate_p256();

    // Two slots, each with a key pair made on the card.
    let p1 = point(&generate(&mut host, 1));
    let p2 = point(&generate(&mut host, 2));
    assert_ne!(p1, p2);

    // A certificate for slot 1's key cannot go into slot 2; nothing of that command stays.
    let cert1 = certificate(&ca, &p1);
    assert!(cert1.len() > 255, "spans STORE DATA commands");
    let r = personalize(
        &mut host,
        true,
        &[Dgi::new(certificate_dgi(2), certificate(&ca, &p1))],
    );
    assert_eq!(r.sw, StatusWord::WRONG_DATA);
    let get_cert = |slot| Command::new(0x80, ins::GET_CERTIFICATE, 1, slot).with_le(256);
    assert_eq!(
        app(&mut host, get_cert(2)).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );

    // RFC 4493 §4's key for slot 1, a random 256-bit key for slot 2, both encrypted under
    // the session's DEK (SCP03: the static Key-DEK, AES-CBC).
    let k1 = apdu::parse_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
    let k2: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
    open_isd(&mut host, true);
    let dek = dek(&host);
    let enc = |k: &[u8]| scp::encrypt_sensitive_data(&dek, k).unwrap();
    let r = personalize(
        &mut host,
        true,
        &[
            Dgi::new(certificate_dgi(1), cert1.clone()),
            Dgi::new(certificate_dgi(2), certificate(&ca, &p2)),
            Dgi::new(aes_key_dgi(1), enc(&k1)),
            Dgi::new(aes_key_dgi(2), enc(&k2)),
        ],
    );
    assert!(r.is_success(), "{r:?}");

    // The certificate comes back; the signature verifies with its key (p256 crate).
    let back = app(&mut host, get_cert(1));
    assert_eq!(back.data, cert1);
    let parsed = gp::cert::Certificate::parse(&back.data).unwrap();
    assert_eq!(parsed.public_key().to_sec1(), p1.as_slice());
    let msg = b"registration challenge 0001";
    let sig = app(
        &mut host,
        Command::new(0x80, ins::SIGN, 0, 1)
            .with_data(msg.to_vec())
            .with_le(256),
    );
    assert!(sig.is_success());
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&p1).unwrap();
    let s = p256::ecdsa::Signature::from_der(&sig.data).unwrap();
    vk.verify(msg, &s).unwrap();
    assert!(vk.verify(b"another message", &s).is_err());

    // MACs: RFC 4493 example 2 through the card, and an independent CMAC.
    let mac = |host: &mut Host, slot, m: &[u8]| {
        app(
            host,
            Command::new(0x80, ins::MAC, 0, slot)
                .with_data(m.to_vec())
                .with_le(256),
        )
    };
    let m = apdu::parse_hex("6bc1bee22e409f96e93d7e117393172a").unwrap();
    assert_eq!(
        apdu::hex(&mac(&mut host, 1, &m).data),
        "070A16B46B4D4144F79BDD9DD04A287C"
    );
    assert_eq!(
        mac(&mut host, 2, b"some data").data,
        independent_cmac(&k2, b"some data")
    );

    // A key sent in the clear (STORE DATA not flagged encrypted) is refused by the applet.
    open_isd(&mut host, true);
    let plain_key = Dgi::new(aes_key_dgi(3), vec![0x11; 16]).to_bytes().unwrap();
    let r = send_in_open_session(
        &mut host,
        &[Command::new(0x80, 0xE2, 0x88, 0x00).with_data(plain_key)],
    );
    assert_eq!(r.sw, StatusWord::SECURITY_NOT_SATISFIED);
    assert_eq!(
        mac(&mut host, 3, b"x").sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );

    // Regenerating before the end of registration replaces the pair and drops its
    // certificate (an interrupted registration starts over).
    let p1b = point(&generate(&mut host, 1));
    assert_ne!(p1b, p1);
    assert_eq!(
        app(&mut host, get_cert(1)).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );

    // The host ends registration: SET STATUS to the application-specific state 0F.
    open_isd(&mut host, true);
    let r = host.set_status(0x40, PERSONALIZED, &h(APP));
    assert!(r.is_success(), "{r:?}");
    let apps = host.status(
        gp::commands::StatusSubset::Applications,
        gp::commands::StatusFormat::Tlv,
    );
    let entry = apps.iter().find(|e| e.aid == aid(APP)).unwrap();
    assert_eq!(entry.life_cycle, PERSONALIZED);
    // Not again, and not back to SELECTABLE.
    assert_eq!(
        host.set_status(0x40, PERSONALIZED, &h(APP)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        host.set_status(0x40, 0x07, &h(APP)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        generate(&mut host, 1).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        generate(&mut host, 5).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // Signing still works: the key pair is in use now.
    let sig = app(
        &mut host,
        Command::new(0x80, ins::SIGN, 0, 1).with_data(vec![1]),
    );
    assert!(sig.is_success());
}

/// SCP02: the DGI is encrypted in 3DES-ECB under the session DEK, which is derived per
/// session, so a key encrypted in one session does not decrypt in the next.
#[test]
fn encrypted_key_over_scp02() {
    let mut host = installed(CardConfig::scp02());
    let key: Vec<u8> = (0..16).map(|i| 0xA0 + i).collect();
    open_isd(&mut host, false);
    let first = dek(&host);
    assert_eq!(first.kind(), scp::KeyKind::Des3);
    let wrapped = scp::encrypt_sensitive_data(&first, &key).unwrap();
    // Encrypted under this session's DEK, sent in the next session: decrypts to another
    // key (the card cannot tell), whose MAC then differs.
    let r = personalize(
        &mut host,
        false,
        &[Dgi::new(aes_key_dgi(7), wrapped.clone())],
    );
    assert!(r.is_success());
    let mac = |host: &mut Host| {
        app(
            host,
            Command::new(0x80, ins::MAC, 0, 7)
                .with_data(b"m".to_vec())
                .with_le(256),
        )
        .data
    };
    assert_ne!(mac(&mut host), independent_cmac(&key, b"m"));
    // In its own session it is the key.
    open_isd(&mut host, false);
    let wrapped = scp::encrypt_sensitive_data(&dek(&host), &key).unwrap();
    let r = send_encrypted_in_open_session(&mut host, &[Dgi::new(aes_key_dgi(7), wrapped)]);
    assert!(r.is_success(), "{r:?}");
    assert_eq!(mac(&mut host), independent_cmac(&key, b"m"));
    // Not whole cipher blocks: 6A80.
    open_isd(&mut host, false);
    let r = send_encrypted_in_open_session(&mut host, &[Dgi::new(aes_key_dgi(7), vec![0; 12])]);
    assert_eq!(r.sw, StatusWord::WRONG_DATA);
}

/// INSTALL [for personalization] and the STORE DATA of `dgis` in the session already open.
fn send_encrypted_in_open_session(host: &mut Host, dgis: &[Dgi]) -> Response {
    let max = host.session.as_ref().unwrap().max_plain_len(255);
    let cmds: Vec<Command> = dgi_store_data(dgis, max)
        .unwrap()
        .iter()
        .map(|c| c.to_command().unwrap())
        .collect();
    send_in_open_session(host, &cmds)
}

/// INSTALL [for personalization] and `cmds` in the session already open; the last answer.
fn send_in_open_session(host: &mut Host, cmds: &[Command]) -> Response {
    let r = host.install(Install::ForPersonalization {
        application: aid(APP),
    });
    assert!(r.is_success(), "{r:?}");
    let mut last = Response::ok(vec![]);
    for c in cmds {
        last = host.send(c);
    }
    last
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let key = [0x42u8; 32];
    let (p3, cert) = {
        let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
        open_isd(&mut host, true);
        let cap = std::fs::read(CAP_PATH).unwrap();
        let cap = gp::cap::CapFile::from_bytes(&cap).unwrap();
        assert!(host
            .load(PKG, None, &cap.load_file_data_block(), Vec::new())
            .is_success());
        assert!(host.install_app(PKG, MODULE, APP, [0, 0, 0]).is_success());
        let p3 = point(&generate(&mut host, 3));
        let cert = certificate(&pki::SoftwareSigner::generate_p256(), &p3);
        open_isd(&mut host, true);
        let wrapped = scp::encrypt_sensitive_data(&dek(&host), &key).unwrap();
        let r = send_encrypted_in_open_session(
            &mut host,
            &[
                Dgi::new(certificate_dgi(3), cert.clone()),
                Dgi::new(aes_key_dgi(3), wrapped),
            ],
        );
        assert!(r.is_success(), "{r:?}");
        (p3, cert)
    };
    let state = std::fs::read_to_string(&path).unwrap();
    assert!(state.contains(&apdu::hex(&cert)));
    let mut host = Host::new(VirtualCard::open(&path, CardConfig::default()).unwrap());
    let back = app(
        &mut host,
        Command::new(0x80, ins::GET_CERTIFICATE, 1, 3).with_le(256),
    );
    assert_eq!(back.data, cert);
    let sig = app(
        &mut host,
        Command::new(0x80, ins::SIGN, 0, 3).with_data(b"after".to_vec()),
    );
    use p256::ecdsa::signature::Verifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&p3)
        .unwrap()
        .verify(
            b"after",
            &p256::ecdsa::Signature::from_der(&sig.data).unwrap(),
        )
        .unwrap();
    let mac = app(
        &mut host,
        Command::new(0x80, ins::MAC, 0, 3).with_data(b"after".to_vec()),
    );
    assert_eq!(mac.data, independent_cmac(&key, b"after"));
}

/// An interrupted STORE DATA sequence leaves half a certificate DGI; a new sequence (block
/// `00`) or a new key pair starts clean, so a resumed registration can finish.
#[test]
fn a_new_store_data_sequence_drops_a_half_received_dgi() {
    let mut host = installed(CardConfig::default());
    let p2 = point(&generate(&mut host, 2));
    let cert = certificate(&pki::SoftwareSigner::generate_p256(), &p2);
    let whole = gp::commands::dgi::header(certificate_dgi(2), cert.len()).unwrap();
    let mut first = whole.clone();
    first.extend_from_slice(&cert[..40]);
    open_isd(&mut host, true);
    // Block 00, not the last: the DGI stays pending, then the card is "pulled".
    let r = send_in_open_session(
        &mut host,
        &[Command::new(0x80, 0xE2, 0x08, 0x00).with_data(first)],
    );
    assert!(r.is_success(), "{r:?}");
    open_isd(&mut host, true);
    let mut again = whole;
    again.extend_from_slice(&cert);
    let r = send_in_open_session(
        &mut host,
        &[Command::new(0x80, 0xE2, 0x88, 0x00).with_data(again)],
    );
    assert!(r.is_success(), "a new sequence starts clean: {r:?}");
    let back = app(
        &mut host,
        Command::new(0x80, ins::GET_CERTIFICATE, 1, 2).with_le(256),
    );
    assert_eq!(back.data, cert);
}
