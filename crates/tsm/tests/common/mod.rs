//! Test harness: a store on every backend (SQLite in a temporary file; PostgreSQL in a
//! fresh schema of the local server), virtual cards as `CardChannel`s, fault injection.
#![allow(dead_code)]

/// SoftHSM2 tokens: the same helper as `kms`'s tests.
#[path = "../../../kms/tests/common/softhsm.rs"]
pub mod softhsm;
pub mod ssd;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use card::CardConfig;
use transport::{CardChannel, TransportError};
use tsm::Store;

/// The default PostgreSQL test database (trust authentication).
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store and what must be cleaned up after it.
pub struct TestStore {
    pub name: &'static str,
    store: Option<Store>,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
    pub url: String,
}

impl TestStore {
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("store")
    }
    pub fn is_sqlite(&self) -> bool {
        self.name.starts_with("sqlite")
    }
    /// The SQLite file (for direct tampering).
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self._dir.as_ref().map(|d| d.path().join("tsm.db"))
    }
    /// A direct PostgreSQL connection with the test schema as search_path.
    pub fn pg_client(&self) -> Option<postgres::Client> {
        let (url, schema) = self.pg_schema.as_ref()?;
        let mut c = postgres::Client::connect(url, postgres::NoTls).ok()?;
        c.batch_execute(&format!("SET search_path TO \"{schema}\""))
            .ok()?;
        Some(c)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // Close the pool before dropping the schema.
        self.store = None;
        if let Some((url, schema)) = &self.pg_schema {
            if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
            }
        }
    }
}

pub fn sqlite() -> TestStore {
    sqlite_with("sqlite", "")
}

/// SQLite with `synchronous=full`: durable across power loss, one fsync per commit.
#[allow(dead_code)]
pub fn sqlite_full() -> TestStore {
    sqlite_with("sqlite-full", "?synchronous=full")
}

fn sqlite_with(name: &'static str, query: &str) -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}{query}", dir.path().join("tsm.db").display());
    let store = Store::open(&url).expect("open sqlite store");
    TestStore {
        name,
        store: Some(store),
        _dir: Some(dir),
        pg_schema: None,
        url,
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    apdu::hex(&b).to_lowercase()
}

/// A PostgreSQL store in a fresh schema, or `None` (with a message) when the server is not
/// reachable and `CARDWRIGHT_PG_TESTS` is not `1`. With `CARDWRIGHT_PG_TESTS=1` an
/// unreachable server fails the test.
pub fn postgres() -> Option<TestStore> {
    postgres_schema("t")
}

/// Like [`postgres`], in a fresh schema named `{prefix}_` and random hex digits.
pub fn postgres_schema(prefix: &str) -> Option<TestStore> {
    postgres_with(prefix, "pool=4")
}

/// [`postgres`] with the store's production options (the default pool and groups), unless
/// `CARDWRIGHT_PG_STORE_OPTIONS` says otherwise: for benchmarks.
#[allow(dead_code)]
pub fn postgres_production() -> Option<TestStore> {
    postgres_with("t", "")
}

/// A PostgreSQL test store whose options are `CARDWRIGHT_PG_STORE_OPTIONS`, or `default`.
fn postgres_with(prefix: &str, default: &str) -> Option<TestStore> {
    let url = std::env::var("CARDWRIGHT_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let required = std::env::var("CARDWRIGHT_PG_TESTS").is_ok_and(|v| v == "1");
    let mut client = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            if required {
                panic!("CARDWRIGHT_PG_TESTS=1 but PostgreSQL at {url} is not reachable: {e}");
            }
            eprintln!("skipping the PostgreSQL half of this test: {url} not reachable ({e}); set CARDWRIGHT_PG_URL, or CARDWRIGHT_PG_TESTS=1 to make this a failure");
            return None;
        }
    };
    let schema = format!("{prefix}_{}", random_suffix());
    client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .expect("create test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    // The store's own options (`pool=`, `groups=`): few connections for tests.
    let options =
        std::env::var("CARDWRIGHT_PG_STORE_OPTIONS").unwrap_or_else(|_| default.to_string());
    let store_url = format!("{url}{sep}schema={schema}&{options}");
    let store = Store::open(&store_url).expect("open postgres store");
    Some(TestStore {
        name: "postgres",
        store: Some(store),
        _dir: None,
        pg_schema: Some((url, schema)),
        url: store_url,
    })
}

/// Every backend available: SQLite always, PostgreSQL when reachable (see [`postgres`]).
pub fn backends() -> Vec<TestStore> {
    let mut v = vec![sqlite()];
    v.extend(postgres());
    v
}

/// A virtual card in this process as a `CardChannel` (`card::VirtualChannel`), shareable so
/// that a test can wrap it in a faulty channel and later talk to it again.
pub type SimCard = card::VirtualChannel;

/// The two cards the tests issue: SCP03 (the default card) and SCP02.
pub trait SimCards {
    /// A fresh SCP03 card with the default keys.
    fn scp03() -> Self;
    /// A fresh SCP02 card with the default keys.
    fn scp02() -> Self;
}

impl SimCards for SimCard {
    fn scp03() -> Self {
        Self::with_config(CardConfig::default())
    }
    fn scp02() -> Self {
        Self::with_config(CardConfig::scp02())
    }
}

/// Where a [`Faulty`] channel breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The N-th APDU (from 0) never reaches the card.
    Before(usize),
    /// The N-th APDU reaches the card and is processed, but the answer is lost.
    After(usize),
    /// Like `After`, then the process "crashes" (panics) instead of seeing an error.
    CrashAfter(usize),
}

/// A channel that breaks at a chosen APDU: the card is pulled out of the reader.
pub struct Faulty<C> {
    pub inner: C,
    pub cut: Cut,
    pub count: Arc<AtomicUsize>,
}

impl<C: CardChannel> Faulty<C> {
    pub fn new(inner: C, cut: Cut) -> Self {
        Faulty {
            inner,
            cut,
            count: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl<C: CardChannel> CardChannel for Faulty<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        match self.cut {
            Cut::Before(k) if n >= k => return Err(TransportError::CardRemoved),
            Cut::After(k) | Cut::CrashAfter(k) if n > k => return Err(TransportError::CardRemoved),
            _ => {}
        }
        let r = self.inner.transmit_raw(capdu)?;
        match self.cut {
            Cut::After(k) if n == k => Err(TransportError::CardRemoved),
            Cut::CrashAfter(k) if n == k => panic!("simulated crash after APDU {k}"),
            _ => Ok(r),
        }
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        match self.cut {
            Cut::Before(k) | Cut::After(k) | Cut::CrashAfter(k)
                if self.count.load(Ordering::SeqCst) > k =>
            {
                Err(TransportError::CardRemoved)
            }
            _ => self.inner.reset(),
        }
    }
    fn name(&self) -> String {
        "faulty reader".into()
    }
}

/// Counts APDUs.
pub struct Counting<C> {
    pub inner: C,
    pub count: usize,
}

impl<C: CardChannel> CardChannel for Counting<C> {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.count += 1;
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

// ---- issuance fixture -------------------------------------------------------------------

use gp::aid::Aid;
use gpclient::{GpClient, KeySpec, OpenOptions};
use kms::{Component, KeyKind, KeyStore, MasterKey, SoftwareKeyStore};
use scp::{Diversification, SecurityLevel};
use tsm::model::{AppSpec, InitialKeys, Role};
use tsm::{Actor, CategorySpec, Issuer, IssuerConfig};

pub const CATEGORY: &str = "acme/gold";
/// The storage applet's package and module in the virtual card (`card::applet`).
pub const STORAGE_PKG: [u8; 5] = [0xF0, 0x43, 0x57, 0x44, 0x53];
pub const STORAGE_MODULE: [u8; 6] = [0xF0, 0x43, 0x57, 0x44, 0x53, 0x01];
pub const STORAGE_INSTANCE: [u8; 7] = [0xF0, 0x43, 0x57, 0x44, 0x53, 0x01, 0x01];
/// GlobalPlatformPro's empty test applet (tests/data/, see README there).
pub const EMPTY_CAP: &[u8] = include_bytes!("../data/Empty_0102030405_8d5ac9e2_2.2.1.cap");
pub const EMPTY_PKG: [u8; 5] = [0x01, 0x02, 0x03, 0x04, 0x05];
pub const EMPTY_APPLET: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

/// A structurally valid CAP of the storage applet's package (the virtual card runs its
/// built-in implementation for that package AID).
pub fn storage_cap() -> Vec<u8> {
    use gp::cap::ComponentTag::*;
    let component = |tag: gp::cap::ComponentTag, info: &[u8]| {
        let mut v = vec![tag.tag()];
        v.extend_from_slice(&(info.len() as u16).to_be_bytes());
        v.extend_from_slice(info);
        (tag, v)
    };
    let name = b"cardwright/storage";
    // Header (JCVM spec §6.4): magic, CAP 2.2, flags ACC_APPLET, package 1.0, AID, name.
    let mut header = vec![0xDE, 0xCA, 0xFF, 0xED, 0x02, 0x02, 0x04, 0x00, 0x01];
    header.push(STORAGE_PKG.len() as u8);
    header.extend_from_slice(&STORAGE_PKG);
    header.push(name.len() as u8);
    header.extend_from_slice(name);
    // Applet component (§6.5): count, AID, install method offset.
    let mut applets = vec![1, STORAGE_MODULE.len() as u8];
    applets.extend_from_slice(&STORAGE_MODULE);
    applets.extend_from_slice(&[0x00, 0x01]);
    // Import component (§6.6): javacard.framework 1.2.
    let mut imports = vec![1];
    imports.extend_from_slice(&[0x02, 0x01, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x62, 0x01, 0x01]);
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
    gp::cap::testing::cap_archive("cardwright/storage", &comps, true)
}

pub fn storage_app() -> AppSpec {
    AppSpec {
        instance: Aid::new(&STORAGE_INSTANCE).unwrap(),
        package: Aid::new(&STORAGE_PKG).unwrap(),
        module: Aid::new(&STORAGE_MODULE).unwrap(),
        privileges: Default::default(),
        params: vec![],
        // BER-TLV the storage applet keeps (STORE DATA through its SD).
        perso: apdu::parse_hex("DF01 03 010203").unwrap(),
    }
}

pub fn empty_app() -> AppSpec {
    AppSpec {
        instance: Aid::new(&EMPTY_APPLET).unwrap(),
        package: Aid::new(&EMPTY_PKG).unwrap(),
        module: Aid::new(&EMPTY_APPLET).unwrap(),
        privileges: Default::default(),
        params: vec![0x01],
        perso: vec![],
    }
}

/// A write of `number` in the test category, with its applications.
pub fn write_req(number: &str) -> tsm::Request {
    tsm::Request::Write {
        card_number: number.into(),
        category: CATEGORY.into(),
        install_apps: true,
        perso: Vec::new(),
    }
}

/// A base key whose bytes the test knows, imported as two components.
pub fn import_key(
    keys: &dyn KeyStore,
    category: &str,
    kind: KeyKind,
    key: &[u8],
) -> kms::BaseKeyInfo {
    let c1: Vec<u8> = (0..key.len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5A)
        .collect();
    let c2: Vec<u8> = key.iter().zip(&c1).map(|(a, b)| a ^ b).collect();
    let comp = |b: &[u8]| Component::new(b, scp::Key::new(kind, b).unwrap().kcv());
    keys.import_base_key(category, kind, vec![comp(&c1), comp(&c2)], None)
        .unwrap()
}

pub const BASE_V1: &str = "00112233445566778899AABBCCDDEEFF";
pub const BASE_V2: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F";

/// Everything a workflow test needs.
pub struct Fixture {
    pub ts: TestStore,
    pub keys: Arc<SoftwareKeyStore>,
    pub issuer: Issuer,
    pub kind: KeyKind,
    pub ci: Actor,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A CI `acme` with category `acme/gold` (GP test key as initial keys, KVN `initial_kvn`),
    /// base key version 1 = [`BASE_V1`] of `kind`, an AP `bank`, the storage and empty
    /// packages registered; with `apps`, the storage applet is a category application.
    pub fn new(ts: TestStore, kind: KeyKind, initial_kvn: u8, apps: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(
            SoftwareKeyStore::create(dir.path().join("keys.json"), MasterKey::generate().unwrap())
                .unwrap(),
        );
        let s = ts.store();
        s.create_tenant("admin", "acme", "ACME Mobile", Role::CardIssuer)
            .unwrap();
        s.create_tenant("admin", "bank", "A Bank", Role::ApplicationProvider)
            .unwrap();
        s.create_category(
            "admin",
            &CategorySpec {
                id: CATEGORY.into(),
                tenant: "acme".into(),
                description: "gold".into(),
                initial_keys: InitialKeys::GpTestKey,
                initial_kvn,
                perso: apdu::parse_hex("42 03 123456").unwrap(),
            },
        )
        .unwrap();
        let info = import_key(
            keys.as_ref(),
            CATEGORY,
            kind,
            &apdu::parse_hex(BASE_V1).unwrap(),
        );
        s.register_key_version(
            "admin",
            CATEGORY,
            info.version,
            CATEGORY,
            kind,
            info.kcv,
            true,
        )
        .unwrap();
        s.add_package("admin", "bank", "storage", &storage_cap())
            .unwrap();
        s.add_package("admin", "bank", "empty", EMPTY_CAP).unwrap();
        if apps {
            s.add_category_app("admin", CATEGORY, &storage_app())
                .unwrap();
        }
        let issuer = Issuer::new(
            s.clone(),
            keys.clone() as Arc<dyn KeyStore>,
            IssuerConfig {
                lease: std::time::Duration::ZERO,
                ..IssuerConfig::default()
            },
        );
        Fixture {
            ts,
            keys,
            issuer,
            kind,
            ci: Actor::new("acme", "operator"),
            _dir: dir,
        }
    }

    pub fn store(&self) -> &Store {
        self.ts.store()
    }

    /// Adds base key version 2 ([`BASE_V2`]) and makes it current.
    pub fn rotate(&self) -> u32 {
        let info = import_key(
            self.keys.as_ref(),
            CATEGORY,
            self.kind,
            &apdu::parse_hex(BASE_V2).unwrap(),
        );
        self.store()
            .register_key_version(
                "admin",
                CATEGORY,
                info.version,
                CATEGORY,
                self.kind,
                info.kcv,
                true,
            )
            .unwrap();
        info.version
    }

    pub fn diversification(&self) -> Diversification {
        kms::diversification_for(self.kind)
    }
}

/// Opens a secure channel on the card, independently of the platform; the client on success.
pub fn open(card: &SimCard, spec: KeySpec) -> Result<GpClient<SimCard>, gpclient::ClientError> {
    let mut client = GpClient::new(transport::Traced::new(card.clone(), None));
    client.open_secure_channel(&OpenOptions {
        keys: spec,
        level: SecurityLevel::MAC,
        scp: None,
        sd: None,
    })?;
    Ok(client)
}

/// The base key `hex` with the category's diversification, asking for key version `kvn`.
pub fn base_spec(hex: &str, kdf: Diversification, kvn: u8) -> KeySpec {
    KeySpec::same(&apdu::parse_hex(hex).unwrap(), kdf, kvn)
}

pub fn test_key_spec(kvn: u8) -> KeySpec {
    KeySpec::same(&gpclient::DEFAULT_TEST_KEY, Diversification::None, kvn)
}
