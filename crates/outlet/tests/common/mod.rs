//! The outlet's test set-up: a SoftHSM2 token per test holding the card category's base
//! key (imported in two components, as at the issuer), the issuer's platform (`tsm`) that
//! writes virtual cards with keys derived from that base key, a provider PKI and packages
//! (the `package` crate's test PKI), the registration applet's CAP, and a channel that
//! cuts the card at a chosen APDU.
#![allow(dead_code)]

#[path = "../../../package/tests/common/mod.rs"]
pub mod pkg;
#[path = "../../../kms/tests/common/softhsm.rs"]
pub mod softhsm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kms::{Component, KeyKind, KeyStore};
use transport::{CardChannel, TransportError};

/// The card category of the tests, and its initial key version (as `category create`).
pub const CATEGORY: &str = "gold";
pub const INITIAL_KVN: u8 = 0x30;
/// The base key (AES-128) the tests import; its key set on cards is KVN 01.
pub const BASE: &str = "00112233445566778899AABBCCDDEEFF";
/// Another issuer's base key.
pub const OTHER_BASE: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F";

/// The registration applet's CAP file (`crates/gp/tests/data/SOURCES.md`).
pub const REGISTRATION_CAP: &[u8] =
    include_bytes!("../../../gp/tests/data/cardwright_registration.cap");
/// Its load file, module and default instance.
pub const REG_PKG: &str = "F043574B41";
pub const REG_MODULE: &str = "F043574B4101";
pub const REG_INSTANCE: &str = "F043574B410101";

const TOKENS: usize = 24;
const PIN: &str = "1234";

struct Hsm {
    pin_file: PathBuf,
    next: AtomicUsize,
}

/// The process's SoftHSM2 tokens (`ol-0` …), or `None` when SoftHSM2 is not installed (the
/// test is skipped; with `CARDWRIGHT_HSM_TESTS=1` that fails instead).
fn hsm() -> Option<&'static Hsm> {
    static HSM: OnceLock<Option<Hsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        if !softhsm::softhsm_installed("the outlet tests") {
            return None;
        }
        let labels: Vec<String> = (0..TOKENS).map(|i| format!("ol-{i}")).collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let dir = softhsm::make_tokens("cw-outlet-softhsm", &refs, PIN);
        Some(Hsm {
            pin_file: dir.join("pin"),
            next: AtomicUsize::new(0),
        })
    })
    .as_ref()
}

/// A fresh token's configuration string, or `None` (skipped).
pub fn token() -> Option<String> {
    let h = hsm()?;
    let i = h.next.fetch_add(1, Ordering::SeqCst);
    assert!(
        i < TOKENS,
        "more than {TOKENS} tokens asked for: raise TOKENS"
    );
    Some(format!(
        "pkcs11:{}?token=ol-{i}&pin-file={}",
        softhsm::MODULE,
        h.pin_file.display()
    ))
}

/// Imports `key` (hex) as the next base key version of `category` in two components.
pub fn import_base_key(keys: &dyn KeyStore, category: &str, key: &str) -> kms::BaseKeyInfo {
    let key = apdu::parse_hex(key).unwrap();
    let c1: Vec<u8> = (0..key.len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5A)
        .collect();
    let c2: Vec<u8> = key.iter().zip(&c1).map(|(a, b)| a ^ b).collect();
    let comp = |b: &[u8]| Component::new(b, scp::Key::new(KeyKind::Aes, b).unwrap().kcv());
    keys.import_base_key(category, KeyKind::Aes, vec![comp(&c1), comp(&c2)], None)
        .unwrap()
}

/// The issuer's platform: a database and a key store holding the category's base key.
pub struct Issuer {
    issuer: tsm::Issuer,
    _dir: tempfile::TempDir,
}

impl Issuer {
    /// A platform over the key store `keys` (whose base key of [`CATEGORY`] is registered).
    pub fn new(keys: Arc<dyn KeyStore>) -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let store =
            tsm::Store::open(&format!("sqlite:{}", dir.path().join("ci.db").display())).unwrap();
        store
            .create_tenant("admin", "issuer", "issuer", tsm::model::Role::CardIssuer)
            .unwrap();
        store
            .create_category(
                "admin",
                &tsm::CategorySpec {
                    id: CATEGORY.into(),
                    tenant: "issuer".into(),
                    description: String::new(),
                    initial_keys: tsm::model::InitialKeys::GpTestKey,
                    initial_kvn: INITIAL_KVN,
                    perso: Vec::new(),
                },
            )
            .unwrap();
        for v in keys
            .list()
            .unwrap()
            .into_iter()
            .filter(|v| v.category == CATEGORY)
        {
            store
                .register_key_version("admin", CATEGORY, v.version, CATEGORY, v.kind, v.kcv, true)
                .unwrap();
        }
        let issuer = tsm::Issuer::new(store, keys, tsm::IssuerConfig::default());
        Issuer { issuer, _dir: dir }
    }

    /// A fresh virtual card written as card `number`.
    pub fn card(&self, number: &str) -> card::VirtualChannel {
        let mut card =
            card::VirtualChannel::new(card::VirtualCard::new(card::CardConfig::default()));
        self.issuer
            .write(
                &tsm::Actor::new("issuer", "setup"),
                number,
                CATEGORY,
                &mut card,
            )
            .unwrap();
        card
    }
}

/// Everything an outlet test needs.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: String,
    pub module: outlet::Module,
    pub pki: pkg::Pki,
    pub issuer: Issuer,
}

impl Fixture {
    /// A token with the base key, the issuer's platform on it, a provider PKI, and the
    /// outlet initialised (trusting the provider's root, granting nothing); `None` when
    /// SoftHSM2 is not installed.
    pub fn new() -> Option<Fixture> {
        let config = token()?;
        let keys: Arc<dyn KeyStore> = Arc::from(kms::open(&config).unwrap());
        import_base_key(keys.as_ref(), CATEGORY, BASE);
        let issuer = Issuer::new(keys);
        let pki = pkg::Pki::new(pkg::KeyType::P256);
        let dir = tempfile::tempdir().unwrap();
        let module = outlet::Module::init(
            &dir.path().join("outlet"),
            outlet::InitOptions {
                id: "outlet-1".into(),
                module: config.clone(),
                trust: vec![package::TrustAnchor {
                    certificate_der: pki.root.der.clone(),
                    grantable: gp::Privileges::NONE,
                }],
                category: CATEGORY.into(),
                initial_kvn: INITIAL_KVN,
                ca_name: None,
            },
        )
        .unwrap();
        Some(Fixture {
            dir,
            config,
            module,
            pki,
            issuer,
        })
    }

    /// The outlet's directory.
    pub fn outlet_dir(&self) -> PathBuf {
        self.dir.path().join("outlet")
    }

    /// A package of the registration applet as `wallet` (key pair `sign` in slot 1,
    /// module AES-128 key `mac` in slot 2), signed by the provider.
    pub fn wallet_package(&self) -> Vec<u8> {
        self.package(
            wallet_manifest(),
            vec![("wallet".into(), REGISTRATION_CAP.to_vec())],
        )
    }

    /// `manifest` with `load_files`, signed by the provider's signer with its chain.
    pub fn package(
        &self,
        manifest: package::Manifest,
        load_files: Vec<(String, Vec<u8>)>,
    ) -> Vec<u8> {
        pkg::build_signed(
            manifest,
            load_files,
            self.pki.chain(),
            Vec::new(),
            &self.pki.signer.key,
        )
    }
}

/// The `wallet` manifest: the registration applet, a card key pair and a module AES key.
pub fn wallet_manifest() -> package::Manifest {
    let mut app = pkg::application("wallet");
    app.title = "Wallet".into();
    app.instance = REG_INSTANCE.into();
    app.registration = vec![
        package::RegistrationKey {
            id: "sign".into(),
            kind: package::KeyKind::EcP256,
            generate: package::Generate::Card,
            slot: 1,
            subject: Some("{app} card {card}".into()),
        },
        package::RegistrationKey {
            id: "mac".into(),
            kind: package::KeyKind::Aes128,
            generate: package::Generate::Module,
            slot: 2,
            subject: None,
        },
    ];
    let mut m = pkg::template(&[]);
    m.applications = vec![app];
    m
}

/// An independent GP client on `card` with the base key (KDF3) at key version 01.
pub fn gp_client(card: &card::VirtualChannel) -> gpclient::GpClient<card::VirtualChannel> {
    let mut c = gpclient::GpClient::new(transport::Traced::new(card.clone(), None));
    c.open_secure_channel(&gpclient::OpenOptions {
        keys: gpclient::KeySpec::same(
            &apdu::parse_hex(BASE).unwrap(),
            scp::Diversification::Kdf3,
            0,
        ),
        level: scp::SecurityLevel::MAC,
        scp: None,
        sd: None,
    })
    .unwrap();
    c
}

/// A channel that records the INS byte of every C-APDU.
#[derive(Clone)]
pub struct Recording<C> {
    pub inner: C,
    pub ins: Arc<Mutex<Vec<u8>>>,
}

impl<C> Recording<C> {
    pub fn new(inner: C) -> Self {
        Recording {
            inner,
            ins: Arc::default(),
        }
    }
    pub fn sent(&self) -> Vec<u8> {
        self.ins.lock().unwrap().clone()
    }
}

impl<C: CardChannel> CardChannel for Recording<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.ins
            .lock()
            .unwrap()
            .push(capdu.get(1).copied().unwrap_or(0));
        self.inner.transmit_raw(capdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

/// The card pulled out of the reader: the `n`-th C-APDU (from 0) is processed by the card
/// but its answer is lost (`after`), or never reaches it; every later exchange fails.
pub struct Cut<C> {
    pub inner: C,
    pub at: usize,
    pub after: bool,
    pub count: usize,
}

impl<C> Cut<C> {
    pub fn new(inner: C, at: usize, after: bool) -> Self {
        Cut {
            inner,
            at,
            after,
            count: 0,
        }
    }
}

impl<C: CardChannel> CardChannel for Cut<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let n = self.count;
        self.count += 1;
        if n > self.at || (n == self.at && !self.after) {
            return Err(TransportError::CardRemoved);
        }
        let r = self.inner.transmit_raw(capdu)?;
        if n == self.at {
            return Err(TransportError::CardRemoved);
        }
        Ok(r)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        if self.count > self.at {
            return Err(TransportError::CardRemoved);
        }
        self.inner.reset()
    }
    fn name(&self) -> String {
        "a reader whose card is pulled".into()
    }
}

/// Opens `outlet.db` of `dir` directly (to play the one who edits it on disk).
pub fn raw_db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(outlet::DB_FILE)).unwrap()
}
