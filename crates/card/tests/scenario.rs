//! Full card management scenarios, driven like a host tool, at every security level of SCP02
//! and SCP03.

mod common;

use apdu::{Command, Response, StatusWord};
use card::{CardConfig, VirtualCard};
use common::*;
use gp::cap::{CapFile, HashAlgorithm};
use gp::commands::{Install, RegistryEntry, StatusFormat, StatusSubset};
use gp::Privileges;
use scp::SecurityLevel;

const SSD: &str = "A000000151000001";
const APP: &str = "F0435744530101";
const EMPTY_CAP: &[u8] = include_bytes!("data/Empty_0102030405_8d5ac9e2_2.2.1.cap");

fn ok0() -> Response {
    Response::ok(vec![0x00])
}

fn find<'a>(entries: &'a [RegistryEntry], a: &str) -> Option<&'a RegistryEntry> {
    entries.iter().find(|e| e.aid == aid(a))
}

/// Everything a card issuer and an application provider do with a card, on a card of the
/// given protocol, with ISD sessions at `level` and SSD (AES, SCP03) sessions at `ssd_level`.
fn scenario(cfg: CardConfig, level: SecurityLevel, ssd_level: SecurityLevel) {
    let isd_keys = cfg.keys.clone();
    let mut host = Host::new(VirtualCard::new(cfg));

    // The issuer opens a secure channel to the ISD with the factory keys.
    assert!(host.select(ISD).is_success());
    host.open(&isd_keys, 0, level).unwrap();
    let isd = host.status(StatusSubset::IssuerSecurityDomain, StatusFormat::Tlv);
    assert_eq!(isd.len(), 1);
    assert_eq!((isd[0].aid, isd[0].life_cycle), (aid(ISD), 0x01));
    assert_eq!(isd[0].privileges, Some(Privileges([0x9E, 0xFE, 0x80])));

    // Create a supplementary security domain with Authorized Management.
    assert_eq!(
        host.install_app(SD_PKG, SD_MODULE, SSD, [0x80, 0x40, 0x00]),
        ok0()
    );
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    let ssd = find(&apps, SSD).expect("SSD registered");
    assert_eq!(ssd.life_cycle, 0x07);
    assert_eq!(ssd.privileges, Some(Privileges([0x80, 0x40, 0x00])));
    assert_eq!(ssd.associated_sd, Some(aid(ISD)));
    assert_eq!(ssd.load_file, Some(aid(SD_PKG)));
    let legacy = host.status(StatusSubset::Applications, StatusFormat::Legacy);
    assert_eq!(
        find(&legacy, SSD).unwrap().privileges,
        Some(Privileges([0x80, 0, 0]))
    );

    // The provider takes over the SSD: it starts with the card's initial keys; PUT KEY a new
    // AES key set, then authenticate with it (SCP03).
    assert!(host.select(SSD).is_success());
    host.open(&isd_keys, 0, level).unwrap();
    let r = host.put_keys(0x00, 0x31, &aes_keys());
    assert_eq!(r.sw, StatusWord::SUCCESS, "PUT KEY {r:?}");
    host.open(&aes_keys(), 0x31, ssd_level).unwrap();
    let ki = host.send(&cmd("80CA00E000"));
    assert!(
        apdu::hex(&ki.data).contains("C00401318810C00402318810C00403318810"),
        "{ki:?}"
    );

    // Load the storage applet package into the SSD (with a SHA-256 load file hash) and the
    // GlobalPlatformPro test CAP (without), then install instances.
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    let hash = HashAlgorithm::Sha256.digest(&lf);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, hash), ok0());
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    let empty = CapFile::from_bytes(EMPTY_CAP).unwrap();
    let block = empty.load_file_data_block();
    assert_eq!(
        host.load("0102030405", Some(SSD), &block, Vec::new()),
        ok0()
    );
    assert_eq!(
        host.install_app(
            "0102030405",
            "0102030405060708",
            "0102030405060708",
            [0, 0, 0]
        ),
        ok0()
    );
    let files = host.status(StatusSubset::LoadFilesAndModules, StatusFormat::Tlv);
    let f = find(&files, STORAGE_PKG).unwrap();
    assert_eq!(f.modules, vec![aid(STORAGE_MODULE)]);
    assert_eq!(f.version, Some(vec![1, 0]));
    assert_eq!(f.associated_sd, Some(aid(SSD)));
    assert_eq!(
        find(&files, "0102030405").unwrap().modules,
        vec![aid("0102030405060708")]
    );
    // The SSD sees only its own content.
    assert!(find(&files, SD_PKG).is_none());

    // Personalise the instance through its SD.
    let perso = Install::ForPersonalization {
        application: aid(APP),
    };
    assert_eq!(host.install(perso), ok0());
    let store = Command::new(0x80, 0xE2, 0x90, 0x00).with_data(h("5F200441424344"));
    assert_eq!(host.send(&store).sw, StatusWord::SUCCESS);

    // Use the application.
    assert!(host.select(APP).is_success());
    assert_eq!(host.raw(&cmd("80CA5F2000")).data, h("5F200441424344"));
    // The test CAP's applet has no implementation here.
    assert_eq!(host.select("0102030405060708").sw, StatusWord(0x6999));

    // Lock and unlock the application (its SD).
    assert!(host.select(SSD).is_success());
    host.open(&aes_keys(), 0x31, ssd_level).unwrap();
    assert_eq!(host.set_status(0x40, 0x80, &h(APP)).sw, StatusWord::SUCCESS);
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, APP).unwrap().life_cycle, 0x87);
    assert_eq!(host.select(APP).sw, StatusWord::FILE_NOT_FOUND);
    assert!(host.select(SSD).is_success());
    host.open(&aes_keys(), 0x31, ssd_level).unwrap();
    assert_eq!(host.set_status(0x40, 0x00, &h(APP)).sw, StatusWord::SUCCESS);
    assert!(host.select(APP).is_success());

    // The issuer secures, locks and unlocks the card.
    assert!(host.select(ISD).is_success());
    host.open(&isd_keys, 0, level).unwrap();
    assert_eq!(
        host.set_status(0x80, 0x7F, &[]).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.set_status(0x80, 0x07, &[]).sw, StatusWord::SUCCESS);
    assert_eq!(host.set_status(0x80, 0x0F, &[]).sw, StatusWord::SUCCESS);
    assert_eq!(
        host.set_status(0x80, 0x07, &[]).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.set_status(0x80, 0x7F, &[]).sw, StatusWord::SUCCESS);
    let isd = host.status(StatusSubset::IssuerSecurityDomain, StatusFormat::Tlv);
    assert_eq!(isd[0].life_cycle, 0x7F);
    assert_eq!(
        host.delete(APP, false).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.select(APP).sw, StatusWord::FUNC_NOT_SUPPORTED);
    assert!(host.select(ISD).is_success());
    host.open(&isd_keys, 0, level).unwrap();
    assert_eq!(host.set_status(0x80, 0x0F, &h(ISD)).sw, StatusWord::SUCCESS);
    assert!(host.select(APP).is_success());

    // The provider deletes its content: a load file with instances only with them.
    assert!(host.select(SSD).is_success());
    host.open(&aes_keys(), 0x31, ssd_level).unwrap();
    assert_eq!(
        host.delete(STORAGE_PKG, false).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.delete(STORAGE_PKG, true), ok0());
    assert_eq!(host.delete("0102030405060708", false), ok0());
    assert_eq!(host.delete("0102030405", false), ok0());
    assert_eq!(
        host.delete(ISD, false).sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    assert_eq!(
        host.delete("A0000000031010", false).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
    let files = host.status(StatusSubset::LoadFiles, StatusFormat::Tlv);
    assert!(files.is_empty(), "{files:?}");

    // The issuer deletes the SSD; the ISD stays.
    assert!(host.select(ISD).is_success());
    host.open(&isd_keys, 0, level).unwrap();
    assert_eq!(
        host.delete(ISD, false).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.delete(SSD, false), ok0());
    assert!(host
        .status(StatusSubset::Applications, StatusFormat::Tlv)
        .is_empty());
    assert_eq!(
        host.delete(SD_PKG, true).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED,
        "ROM"
    );
}

const SCP03_LEVELS: [u8; 6] = [0x00, 0x01, 0x03, 0x11, 0x13, 0x33];

#[test]
fn scp03_card_at_every_level() {
    for l in SCP03_LEVELS {
        scenario(CardConfig::default(), SecurityLevel(l), SecurityLevel(l));
    }
}

#[test]
fn scp02_card_at_every_level() {
    for l in [0x00, 0x01, 0x03, 0x11, 0x13] {
        scenario(
            CardConfig::scp02(),
            SecurityLevel(l),
            SecurityLevel(if l == 0x13 { 0x33 } else { l }),
        );
    }
}

#[test]
fn wrong_key_is_caught_by_the_host_before_external_authenticate() {
    let mut host = Host::new(VirtualCard::new(CardConfig {
        max_auth_failures: 2,
        ..CardConfig::default()
    }));
    for _ in 0..5 {
        let e = host.open(&aes_keys(), 0, SecurityLevel::MAC).unwrap_err();
        assert!(matches!(e, scp::Error::CardCryptogramMismatch), "{e:?}");
    }
    // No EXTERNAL AUTHENTICATE was sent, so the key set is not blocked.
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
}

/// INITIALIZE UPDATE, then an EXTERNAL AUTHENTICATE with a wrong cryptogram.
fn failed_auth(host: &mut Host) -> StatusWord {
    let r = host.raw(&scp::initialize_update(0, &h("0001020304050607")));
    if !r.is_success() {
        return r.sw;
    }
    host.raw(&cmd("848201001000112233445566778899AABBCCDDEEFF"))
        .sw
}

#[test]
fn key_set_blocks_after_max_failures_and_survives_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let cfg = CardConfig {
        max_auth_failures: 3,
        ..CardConfig::default()
    };
    let mut host = Host::new(VirtualCard::open(&path, cfg.clone()).unwrap());
    // A success resets the count.
    assert_eq!(failed_auth(&mut host), StatusWord(0x6300));
    assert_eq!(failed_auth(&mut host), StatusWord(0x6300));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    // Add a second key set while we can.
    assert!(host.put_keys(0, 0x31, &aes_keys()).is_success());
    host.session = None;
    for _ in 0..3 {
        assert_eq!(failed_auth(&mut host), StatusWord(0x6300));
    }
    assert_eq!(failed_auth(&mut host), StatusWord::AUTH_METHOD_BLOCKED);
    // A wrong MAC on EXTERNAL AUTHENTICATE counts the same way; it is still blocked after a
    // power cycle and after reopening the state file.
    host.card.reset();
    assert_eq!(
        host.raw(&scp::initialize_update(0x30, &h("0001020304050607")))
            .sw,
        StatusWord(0x6983)
    );
    drop(host);
    let mut host = Host::new(VirtualCard::open(&path, cfg).unwrap());
    assert!(matches!(
        host.open(&default_keys(true), 0x30, SecurityLevel::MAC),
        Err(scp::Error::Status(StatusWord(0x6983)))
    ));
    // The other key set still works and can replace the blocked one, which unblocks it.
    host.open(&aes_keys(), 0x31, SecurityLevel::MAC).unwrap();
    assert!(host.put_keys(0x30, 0x30, &default_keys(true)).is_success());
    host.open(&default_keys(true), 0x30, SecurityLevel::MAC_ENC)
        .unwrap();
}

#[test]
fn wrong_cmac_ends_the_session() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let mut c = host
        .session
        .as_mut()
        .unwrap()
        .wrap(&cmd("80F28002024F0000"))
        .unwrap();
    let n = c.data.len();
    c.data[n - 1] ^= 1;
    assert_eq!(host.raw(&c).sw, StatusWord::SECURITY_NOT_SATISFIED);
    host.session = None;
    // The session is gone: secure messaging is refused, and so is a plain command.
    assert_eq!(
        host.raw(&cmd("80F28002024F0000")).sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    // A plain command in a C-MAC session is refused and ends it, too.
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.raw(&cmd("80F28002024F0000")).sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    let c = host
        .session
        .as_mut()
        .unwrap()
        .wrap(&cmd("80F28002024F0000"))
        .unwrap();
    assert_eq!(host.raw(&c).sw, StatusWord::SECURITY_NOT_SATISFIED);
}

#[test]
fn get_status_pages_with_6310() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC_ENC_RMAC_RENC)
        .unwrap();
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    let names: Vec<String> = (0..30)
        .map(|i| format!("F04357445301{i:02X}0102030405060708"))
        .collect();
    for n in &names {
        assert_eq!(
            host.install_app(STORAGE_PKG, STORAGE_MODULE, n, [0, 0, 0]),
            ok0()
        );
    }
    let r = host.send(&cmd("80F24002024F0000"));
    assert_eq!(r.sw, StatusWord::MORE_DATA_AVAILABLE);
    assert!(r.data.len() <= 238);
    let all = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(all.len(), 30);
    let legacy = host.status(StatusSubset::Applications, StatusFormat::Legacy);
    assert_eq!(legacy.len(), 30);
    // Search by AID prefix, and a tag list.
    let r = host.send(&cmd("80F24002 0E 4F07F0435744530105 5C034F9F70 00"));
    assert_eq!(
        apdu::hex(&r.to_bytes()),
        format!("E3154F0F{}9F7001079000", names[5])
    );
    assert_eq!(
        host.send(&cmd("80F24002 05 4F03A0A0A0 00")).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
    // "Next" without a first page.
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.send(&cmd("80F24003024F0000")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

#[test]
fn terminated_card_answers_only_get_data() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    assert_eq!(host.set_status(0x80, 0xFF, &[]).sw, StatusWord::SUCCESS);
    assert_eq!(host.send(&cmd("80CA9F7F00")).sw, StatusWord::SUCCESS);
    assert_eq!(
        host.send(&cmd("80F28002024F0000")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    host.card.reset();
    host.session = None;
    assert_eq!(host.select(APP).sw, StatusWord::FILE_NOT_FOUND);
    assert!(host.select(ISD).is_success());
    assert_eq!(host.raw(&cmd("80CA9F7F00")).sw, StatusWord::SUCCESS);
    assert_eq!(
        host.raw(&scp::initialize_update(0, &h("0001020304050607")))
            .sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        host.raw(&cmd("0070000001")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

#[test]
fn load_errors() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    // Wrong hash.
    assert_eq!(
        host.load(STORAGE_PKG, None, &lf, vec![0; 32]).sw,
        StatusWord::WRONG_DATA
    );
    // Package AID differs from the announced load file AID.
    assert_eq!(
        host.load("F0435744AA", None, &lf, Vec::new()).sw,
        StatusWord::WRONG_DATA
    );
    // Unknown security domain.
    assert_eq!(
        host.load(STORAGE_PKG, Some("A0000001510000FF"), &lf, Vec::new())
            .sw,
        StatusWord(0x6A88)
    );
    // LOAD without INSTALL [for load]; blocks out of order.
    assert_eq!(
        host.send(&cmd("80E8800003C40100")).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    let r = host.install(Install::for_load(aid(STORAGE_PKG), None));
    assert_eq!(r, ok0());
    assert_eq!(
        host.send(&cmd("80E8000103C40100")).sw,
        StatusWord::INCORRECT_P1P2
    );
    // Not a load file structure.
    host.install(Install::for_load(aid(STORAGE_PKG), None));
    assert_eq!(
        host.send(&cmd("80E8800003AA0100")).sw,
        StatusWord::WRONG_DATA
    );
    // Nothing was registered; the right load works, twice is refused.
    assert_eq!(
        host.load(STORAGE_PKG, None, &lf, HashAlgorithm::Sha1.digest(&lf)),
        ok0()
    );
    assert_eq!(
        host.load(STORAGE_PKG, None, &lf, Vec::new()).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // Install errors: unknown module, duplicate instance, SD privilege on an applet.
    assert_eq!(
        host.install_app(STORAGE_PKG, "F04357445399", APP, [0, 0, 0])
            .sw,
        StatusWord(0x6A88)
    );
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    let dup = host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]);
    assert_eq!(dup.sw, StatusWord::CONDITIONS_NOT_SATISFIED);
    let same_as_lf = host.install_app(STORAGE_PKG, STORAGE_MODULE, STORAGE_PKG, [0, 0, 0]);
    assert_eq!(same_as_lf.sw, StatusWord::CONDITIONS_NOT_SATISFIED);
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, "F0435744530102", [0x80, 0, 0])
            .sw,
        StatusWord::WRONG_DATA
    );
}

/// GP 2.3.1 §6.4.1, §11.5.2.3.5: a security domain extradited to itself leaves the ISD's
/// hierarchy; an application cannot be associated with itself.
#[test]
fn extradition_of_a_security_domain_to_itself() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.install_app(SD_PKG, SD_MODULE, SSD, [0x80, 0x40, 0]),
        ok0()
    );
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    let to_itself = |object: &str| Install::ForExtradition {
        security_domain: aid(object),
        application: aid(object),
        params: vec![],
        token: vec![],
    };
    // An application is no security domain (the target must be one): refused, nothing
    // changes.
    assert_eq!(
        host.install(to_itself(APP)).sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, APP).unwrap().associated_sd, Some(aid(ISD)));
    // The ISD is never extradited, not even to itself.
    assert_eq!(
        host.install(to_itself(ISD)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // The SSD: accepted, and the registry says it is associated with itself.
    assert_eq!(
        find(&apps, SSD).unwrap().associated_sd,
        Some(aid(ISD)),
        "before"
    );
    assert_eq!(host.install(to_itself(SSD)), ok0());
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, SSD).unwrap().associated_sd, Some(aid(SSD)));
    // Associated with itself, it has no content: it can still be deleted by the ISD.
    assert_eq!(host.delete(SSD, false), ok0());
}

#[test]
fn extradition_registry_update_and_sd_rules() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    // An SSD without Authorized Management cannot load.
    assert_eq!(
        host.install_app(SD_PKG, SD_MODULE, SSD, [0x80, 0, 0]),
        ok0()
    );
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    // Move the application under the SSD.
    let ex = Install::ForExtradition {
        security_domain: aid(SSD),
        application: aid(APP),
        params: vec![],
        token: vec![],
    };
    assert_eq!(host.install(ex), ok0());
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, APP).unwrap().associated_sd, Some(aid(SSD)));
    // The SSD now has content: it cannot be deleted.
    assert_eq!(
        host.delete(SSD, false).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // Registry update: give the SSD Authorized Management; default selection to the app.
    let ru = Install::ForRegistryUpdate {
        security_domain: None,
        application: Some(aid(SSD)),
        privileges: Some(Privileges([0x80, 0x40, 0])),
        params: vec![],
        token: vec![],
    };
    assert_eq!(host.install(ru), ok0());
    let ru = Install::ForRegistryUpdate {
        security_domain: None,
        application: Some(aid(APP)),
        privileges: Some(Privileges([0x04, 0, 0])),
        params: vec![],
        token: vec![],
    };
    assert_eq!(host.install(ru), ok0());
    host.card.reset();
    host.session = None;
    // The application with Card Reset is selected at reset.
    assert_eq!(
        host.raw(&cmd("80CA5F2000")).sw,
        StatusWord(0x6A88),
        "storage applet answers"
    );
    assert!(host.select(SSD).is_success());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.load(
            "F043574454",
            None,
            &load_file("F043574454", (1, 1), &[]),
            Vec::new()
        ),
        ok0()
    );
    // An SSD cannot associate a load file with another SD.
    assert_eq!(
        host.load(
            "F043574455",
            Some(ISD),
            &load_file("F043574455", (1, 1), &[]),
            Vec::new()
        )
        .sw,
        StatusWord::SECURITY_NOT_SATISFIED
    );
    // ... nor create SDs' keys for others: its PUT KEY goes to itself.
    assert!(host.put_keys(0, 0x32, &aes_keys()).is_success());
    host.open(&aes_keys(), 0x32, SecurityLevel::MAC).unwrap();
    // Delete a key set by KVN, then the last one is refused.
    let del = |id: Option<u8>, version: Option<u8>| {
        gp::commands::Delete::Key { id, version }
            .to_command()
            .unwrap()
    };
    assert_eq!(host.send(&del(None, Some(0x30))), ok0());
    assert_eq!(host.send(&del(None, Some(0x30))).sw, StatusWord(0x6A88));
    assert_eq!(
        host.send(&del(None, Some(0x32))).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
}

#[test]
fn ssd_lock_with_its_applications() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.install_app(SD_PKG, SD_MODULE, SSD, [0x80, 0x40, 0]),
        ok0()
    );
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, Some(SSD), &lf, Vec::new()), ok0());
    assert!(host.select(SSD).is_success());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0, 0, 0]),
        ok0()
    );
    // The SSD may personalise itself (SET STATUS to PERSONALIZED).
    assert_eq!(host.set_status(0x40, 0x0F, &h(SSD)).sw, StatusWord::SUCCESS);
    assert!(host.select(ISD).is_success());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(host.set_status(0x60, 0x80, &h(SSD)).sw, StatusWord::SUCCESS);
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, SSD).unwrap().life_cycle, 0x8F);
    assert_eq!(find(&apps, APP).unwrap().life_cycle, 0x87);
    assert_eq!(host.select(SSD).sw, StatusWord::FILE_NOT_FOUND);
    assert!(host.select(ISD).is_success());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(host.set_status(0x60, 0x00, &h(SSD)).sw, StatusWord::SUCCESS);
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, SSD).unwrap().life_cycle, 0x0F);
    assert_eq!(find(&apps, APP).unwrap().life_cycle, 0x07);
    assert_eq!(
        host.set_status(0x40, 0x00, &h(SSD)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        host.set_status(0x40, 0x80, &h(ISD)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    // For applications: lock, unlock and application-specific states (`0xxxx111` above
    // SELECTABLE, by a managing SD); no regression to INSTALLED or back to SELECTABLE.
    assert_eq!(
        host.set_status(0x40, 0x03, &h(APP)).sw,
        StatusWord::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(host.set_status(0x40, 0x1F, &h(APP)).sw, StatusWord::SUCCESS);
    let apps = host.status(StatusSubset::Applications, StatusFormat::Tlv);
    assert_eq!(find(&apps, APP).unwrap().life_cycle, 0x1F);
    for p2 in [0x07, 0x1F, 0x0B] {
        assert_eq!(
            host.set_status(0x40, p2, &h(APP)).sw,
            StatusWord::CONDITIONS_NOT_SATISFIED,
            "{p2:02X}"
        );
    }
    assert_eq!(
        host.set_status(0x40, 0x80, &h("A0000000031010")).sw,
        StatusWord(0x6A88)
    );
}

#[test]
fn card_reset_privilege_moves_and_returns_to_the_isd() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    // Card Reset only with make selectable.
    let install_only = Install::ForInstall {
        load_file: aid(STORAGE_PKG),
        module: aid(STORAGE_MODULE),
        application: aid(APP),
        privileges: Privileges([0x04, 0, 0]),
        params: h("C900"),
        token: vec![],
        make_selectable: false,
    };
    assert_eq!(host.install(install_only).sw, StatusWord::WRONG_DATA);
    assert_eq!(
        host.install_app(STORAGE_PKG, STORAGE_MODULE, APP, [0x04, 0, 0]),
        ok0()
    );
    let isd = host.status(StatusSubset::IssuerSecurityDomain, StatusFormat::Tlv);
    assert_eq!(isd[0].privileges, Some(Privileges([0x9A, 0xFE, 0x80])));
    host.card.reset();
    host.session = None;
    assert_eq!(
        host.raw(&cmd("80CA5F2000")).sw,
        StatusWord(0x6A88),
        "the storage applet answers"
    );
    assert!(host.select(ISD).is_success());
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    assert_eq!(host.delete(APP, false), ok0());
    let isd = host.status(StatusSubset::IssuerSecurityDomain, StatusFormat::Tlv);
    assert_eq!(isd[0].privileges, Some(Privileges([0x9E, 0xFE, 0x80])));
    // Personalisation needs an application that takes it: the test CAP's has no code here.
    let empty = CapFile::from_bytes(EMPTY_CAP).unwrap();
    assert_eq!(
        host.load(
            "0102030405",
            None,
            &empty.load_file_data_block(),
            Vec::new()
        ),
        ok0()
    );
    assert_eq!(
        host.install_app(
            "0102030405",
            "0102030405060708",
            "010203040506070801",
            [0, 0, 0]
        ),
        ok0()
    );
    let perso = Install::ForPersonalization {
        application: aid("010203040506070801"),
    };
    assert_eq!(host.install(perso).sw, StatusWord::WRONG_DATA);
}

#[test]
fn put_key_rules() {
    let mut host = Host::new(VirtualCard::new(CardConfig::scp02()));
    host.open(&default_keys(false), 0, SecurityLevel::MAC_ENC)
        .unwrap();
    let des = scp::StaticKeys {
        enc: scp::Key::des3(&h("00112233445566778899AABBCCDDEEFF")).unwrap(),
        mac: scp::Key::des3(&h("0123456789ABCDEFFEDCBA9876543210")).unwrap(),
        dek: scp::Key::des3(&h("F0E1D2C3B4A5968778695A4B3C2D1E0F")).unwrap(),
    };
    let session = host.session.as_ref().unwrap();
    let good = scp::put_key::key_set_data(0x21, &des, session).unwrap();
    // A wrong key check value: 9485, nothing changes.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0xFF;
    assert_eq!(
        host.send(&scp::put_key::command(0x20, bad)).sw,
        StatusWord(0x9485)
    );
    // KVN outside 01..7F, key identifier 0, unknown key set to replace.
    let mut high = good.clone();
    high[0] = 0x80;
    assert_eq!(
        host.send(&scp::put_key::command(0x20, high)).sw,
        StatusWord::WRONG_DATA
    );
    let mut c = scp::put_key::command(0x20, good.clone());
    c.p2 = 0x80;
    assert_eq!(host.send(&c).sw, StatusWord::INCORRECT_P1P2);
    assert_eq!(
        host.send(&scp::put_key::command(0x55, good.clone())).sw,
        StatusWord(0x6A88)
    );
    // Replace the factory DES key set (KVN 20 becomes 21).
    assert!(host.put_keys(0x20, 0x21, &des).is_success());
    // Adding a key set whose KVN exists is refused.
    assert_eq!(host.put_keys(0x00, 0x21, &des).sw, StatusWord::WRONG_DATA);
    assert_eq!(
        host.raw(&scp::initialize_update(0x20, &h("0001020304050607")))
            .sw,
        StatusWord::REFERENCED_DATA_NOT_FOUND
    );
    host.open(&des, 0x21, SecurityLevel::MAC).unwrap();
    assert!(matches!(
        host.open(&default_keys(false), 0, SecurityLevel::MAC),
        Err(scp::Error::CardCryptogramMismatch)
    ));
    let ki = host.raw(&cmd("80CA00E000"));
    assert_eq!(
        apdu::hex(&ki.data),
        "E01AC00401218010C00402218010C00403218010C0061301B120F001"
    );
}

#[test]
fn isd_personalisation_answers_get_data() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC_ENC)
        .unwrap();
    // GP 2.3.1 §11.11: IIN (42), CIN (45) and key diversification data (CF) for the ISD.
    let store = Command::new(0x80, 0xE2, 0x90, 0x00).with_data(h(
        "4203123456 45080102030405060708 CF0A11223344556677889900",
    ));
    assert_eq!(host.send(&store).sw, StatusWord::SUCCESS);
    assert_eq!(host.send(&cmd("80CA004200")).data, h("4203123456"));
    assert_eq!(
        host.send(&cmd("80CA004500")).data,
        h("45080102030405060708")
    );
    assert_eq!(
        host.send(&cmd("80CA00CF00")).data,
        h("CF0A11223344556677889900")
    );
    // The new KDD is in the next INITIALIZE UPDATE response.
    let r = host.raw(&scp::initialize_update(0, &h("0001020304050607")));
    assert_eq!(&r.data[..10], &h("11223344556677889900")[..]);
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    // A KDD of the wrong length is refused.
    let bad = Command::new(0x80, 0xE2, 0x90, 0x00).with_data(h("CF03112233"));
    assert_eq!(host.send(&bad).sw, StatusWord::WRONG_DATA);
}

#[test]
fn select_next_occurrence() {
    let mut host = Host::new(VirtualCard::new(CardConfig::default()));
    host.open(&default_keys(true), 0, SecurityLevel::MAC)
        .unwrap();
    let lf = load_file(STORAGE_PKG, (1, 0), &[STORAGE_MODULE]);
    assert_eq!(host.load(STORAGE_PKG, None, &lf, Vec::new()), ok0());
    for app in ["F043574453010101", "F043574453010102", "F043574453010103"] {
        assert_eq!(
            host.install_app(STORAGE_PKG, STORAGE_MODULE, app, [0, 0, 0]),
            ok0()
        );
    }
    let aid_of = |r: &Response| gp::commands::Fci::parse(&r.data).unwrap().aid;
    let first = host.raw(&cmd("00A4040006F0435744530100"));
    assert_eq!(aid_of(&first), aid("F043574453010101"));
    let second = host.raw(&cmd("00A4040206F0435744530100"));
    assert_eq!(aid_of(&second), aid("F043574453010102"));
    let third = host.raw(&cmd("00A4040206F0435744530100"));
    assert_eq!(aid_of(&third), aid("F043574453010103"));
    assert_eq!(
        host.raw(&cmd("00A4040206F0435744530100")).sw,
        StatusWord::FILE_NOT_FOUND
    );
}
