//! What the outlet module does with `gpclient` against the virtual card's registration
//! applet: the install of its CAP with a progress callback per LOAD block, personalisation
//! in DGIs with a key encrypted under the channel's DEK (SCP03 and SCP02), and SET STATUS
//! to the application-specific state that ends registration.

use std::sync::{Arc, Mutex};

use apdu::{Command, StatusWord};
use card::registration::{aes_key_dgi, certificate_dgi, ins, PERSONALIZED};
use card::{CardConfig, VirtualCard};
use gp::aid::Aid;
use gp::commands::Dgi;
use gpclient::{ops, ClientError, GpClient, KeySpec, OpenOptions, Operation, DEFAULT_TEST_KEY};
use scp::{Diversification, SecurityLevel};
use transport::{CardChannel, Traced, TransportError};

/// The registration applet's CAP (see crates/gp/tests/data/SOURCES.md).
const CAP: &[u8] = include_bytes!("../../gp/tests/data/cardwright_registration.cap");
const INSTANCE: [u8; 7] = [0xF0, 0x43, 0x57, 0x4B, 0x41, 0x01, 0x01];

#[derive(Clone)]
struct Sim(Arc<Mutex<VirtualCard>>);

impl CardChannel for Sim {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.lock().unwrap().transmit(capdu))
    }
    fn atr(&self) -> Vec<u8> {
        self.0.lock().unwrap().atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.0.lock().unwrap().reset();
        Ok(())
    }
    fn name(&self) -> String {
        "virtual card (registration test)".into()
    }
}

fn aid(b: &[u8]) -> Aid {
    Aid::new(b).unwrap()
}

fn open(sim: &Sim) -> GpClient<Sim> {
    let mut c = GpClient::new(Traced::new(sim.clone(), None));
    c.open_secure_channel(&OpenOptions {
        keys: KeySpec::same(&DEFAULT_TEST_KEY, Diversification::None, 0),
        level: SecurityLevel::MAC_ENC,
        scp: None,
        sd: None,
    })
    .unwrap();
    c
}

fn cap() -> gp::cap::CapFile {
    gp::cap::CapFile::from_bytes(CAP).unwrap()
}

/// A card with the registration applet installed as [`INSTANCE`].
fn installed(config: CardConfig) -> Sim {
    let sim = Sim(Arc::new(Mutex::new(VirtualCard::new(config))));
    let mut c = open(&sim);
    let opts = ops::InstallOptions {
        instance: Some(aid(&INSTANCE)),
        ..Default::default()
    };
    ops::install_cap(&mut c, &cap(), &opts).unwrap();
    sim
}

/// Sends a command to the selected instance (plain), GET RESPONSE included.
fn app(c: &mut GpClient<Sim>, cmd: Command) -> apdu::Response {
    c.select(&aid(&INSTANCE)).unwrap();
    c.send(Operation::Apdu, &cmd).unwrap()
}

fn generate(c: &mut GpClient<Sim>, slot: u8) -> Vec<u8> {
    let r = app(
        c,
        Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, slot).with_le(256),
    );
    assert!(r.is_success(), "{r:?}");
    r.data[5..].to_vec()
}

#[test]
fn install_reports_each_load_block() {
    // A large load file, so that there are several LOAD blocks.
    let big = gp::cap::testing::synthetic_cap(3000);
    let big = gp::cap::CapFile::from_bytes(&big).unwrap();
    let sim = Sim(Arc::new(Mutex::new(
        VirtualCard::new(CardConfig::default()),
    )));
    let mut c = open(&sim);
    let mut seen = Vec::new();
    let report = ops::install_cap_with_progress(
        &mut c,
        &big,
        &ops::InstallOptions {
            load_only: true,
            ..Default::default()
        },
        &mut |block, blocks| seen.push((block, blocks)),
    )
    .unwrap();
    assert!(report.blocks > 10, "{report:?}");
    let want: Vec<(usize, usize)> = (1..=report.blocks).map(|i| (i, report.blocks)).collect();
    assert_eq!(seen, want);
    // A refused LOAD stops the count where the card stopped.
    let mut seen = Vec::new();
    let mut c = open(&sim);
    let e =
        ops::install_cap_with_progress(&mut c, &big, &Default::default(), &mut |block, blocks| {
            seen.push((block, blocks))
        })
        .unwrap_err();
    assert!(matches!(e, ClientError::Card { .. }), "{e}");
    assert!(seen.is_empty(), "the load file is there already: {seen:?}");
}

/// Registration over a channel whose DEK the test reads (as a key store gets it):
/// certificate (longer than one STORE DATA) and an AES key, then SET STATUS `0F`.
fn register(config: CardConfig) {
    let sim = installed(config);
    let mut c = open(&sim);
    let point = generate(&mut c, 1);
    let ca = pki::SoftwareSigner::generate_p256();
    let pk = scp::scp11::PublicKey::from_sec1(scp::scp11::Curve::P256, &point).unwrap();
    let cert = pki::scp11::ecka_certificate(
        &ca,
        &pki::Subject::new("outlet CA"),
        &pk.to_spki_der().unwrap(),
        &pki::scp11::CertificateParams::new(
            pki::Subject::new("slot 1"),
            time::OffsetDateTime::now_utc(),
            None,
        ),
    )
    .unwrap();
    assert!(cert.len() > c.max_plain_data());
    let key = [0x2Bu8; 16];
    let mut c = open(&sim);
    let dek = c.session().unwrap().data_encryption_key().unwrap();
    let encrypted = scp::encrypt_sensitive_data(&dek, &key).unwrap();
    ops::personalize_dgis(
        &mut c,
        &aid(&INSTANCE),
        &[
            Dgi::new(certificate_dgi(1), cert.clone()),
            Dgi::new(aes_key_dgi(1), encrypted),
        ],
    )
    .unwrap();
    let got = app(
        &mut c,
        Command::new(0x80, ins::GET_CERTIFICATE, 1, 1).with_le(256),
    );
    assert_eq!(got.data, cert);
    let mac = app(
        &mut c,
        Command::new(0x80, ins::MAC, 0, 1)
            .with_data(b"m".to_vec())
            .with_le(256),
    );
    assert_eq!(
        mac.data,
        scp::Key::aes(&key).unwrap().aes_cmac(b"m").unwrap()
    );
    // A certificate that is not one: refused by the applet, the error names STORE DATA.
    let mut c = open(&sim);
    let e = ops::personalize_dgis(
        &mut c,
        &aid(&INSTANCE),
        &[Dgi::new(0x0103, vec![0x30, 0x00])],
    )
    .unwrap_err();
    assert!(
        matches!(e, ClientError::Card { op: Operation::StoreData, sw, .. } if sw == StatusWord::WRONG_DATA),
        "{e}"
    );
    // Without a secure channel nothing is sent.
    let mut plain = GpClient::new(Traced::new(sim.clone(), None));
    assert!(matches!(
        ops::personalize_dgis(&mut plain, &aid(&INSTANCE), &[]),
        Err(ClientError::NoSecureChannel(Operation::StoreData))
    ));
    // The end of registration.
    let mut c = open(&sim);
    ops::set_application_state(&mut c, &aid(&INSTANCE), PERSONALIZED).unwrap();
    let reg = ops::registry(&mut c).unwrap();
    assert_eq!(reg.find(&aid(&INSTANCE)).unwrap().life_cycle, PERSONALIZED);
    match ops::set_application_state(&mut c, &aid(&INSTANCE), 0x07).unwrap_err() {
        ClientError::Card { op, sw, .. } => {
            assert_eq!((op, sw), (Operation::SetStatus, StatusWord(0x6985)))
        }
        other => panic!("{other:?}"),
    }
    let r = app(
        &mut c,
        Command::new(0x80, ins::GENERATE_KEY_PAIR, 0, 1).with_le(256),
    );
    assert_eq!(r.sw, StatusWord::CONDITIONS_NOT_SATISFIED);
}

#[test]
fn registration_over_scp03() {
    register(CardConfig::default());
}

#[test]
fn registration_over_scp02() {
    register(CardConfig::scp02());
}

/// SoftHSM2 tokens for this test process (the `kms` tests' set-up).
#[path = "../../kms/tests/common/softhsm.rs"]
mod softhsm;

/// A registration key made in a key store reaches the applet only encrypted under the
/// channel's DEK (`wrap_for_card`; in a PKCS#11 token by `C_WrapKey` for SCP03), and the
/// card's MAC then equals the key store's, over SCP03 and SCP02.
fn key_store_key_reaches_the_applet(store: &dyn kms::SecretKeyStore, prefix: &str) {
    for config in [CardConfig::default(), CardConfig::scp02()] {
        let sim = installed(config);
        let label = format!("{prefix}reg/slot-4");
        let info = store.generate(&label, kms::SecretKeyKind::Aes256).unwrap();
        let mut c = open(&sim);
        let dek = c.session().unwrap().data_encryption_key().unwrap();
        let encrypted = store.wrap_for_card(&label, &dek).unwrap();
        ops::personalize_dgis(
            &mut c,
            &aid(&INSTANCE),
            &[Dgi::new(aes_key_dgi(4), encrypted)],
        )
        .unwrap();
        for m in [&b""[..], b"challenge", &[0x5A; 100]] {
            let mac = app(
                &mut c,
                Command::new(0x80, ins::MAC, 0, 4)
                    .with_data(m.to_vec())
                    .with_le(256),
            );
            assert_eq!(
                mac.data,
                store.cmac(&label, m).unwrap(),
                "KCV {:?}",
                info.kcv
            );
        }
        assert!(store.delete(&label).unwrap());
    }
}

#[test]
fn software_key_store_key_reaches_the_applet() {
    let dir = tempfile::tempdir().unwrap();
    let store = kms::SoftwareKeyStore::create(
        dir.path().join("keys.json"),
        kms::MasterKey::generate().unwrap(),
    )
    .unwrap();
    key_store_key_reaches_the_applet(&store, "");
}

#[test]
fn pkcs11_key_store_key_reaches_the_applet() {
    if !softhsm::softhsm_installed("the PKCS#11 registration test") {
        return;
    }
    let dir = softhsm::make_tokens("cw-gpclient-reg", &["cw-reg"], "1234");
    let config = format!(
        "pkcs11:{}?token=cw-reg&pin-file={}",
        softhsm::MODULE,
        dir.join("pin").display()
    );
    let store = kms::open_secret_keys(&config).unwrap();
    key_store_key_reaches_the_applet(store.as_ref(), "hsm/");
}
