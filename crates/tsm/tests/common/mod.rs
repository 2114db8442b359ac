//! Test harness: a store on every backend (SQLite in a temporary file; PostgreSQL in a
//! fresh schema of the local server), virtual cards as `CardChannel`s, fault injection.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use card::{CardConfig, VirtualCard};
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
        self.name == "sqlite"
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
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("tsm.db").display());
    let store = Store::open(&url).expect("open sqlite store");
    TestStore {
        name: "sqlite",
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
    let schema = format!("t_{}", random_suffix());
    client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .expect("create test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}schema={schema}&pool=4");
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

/// A virtual card in this process as a `CardChannel`, shareable so that a test can wrap it
/// in a faulty channel and later talk to it again.
#[derive(Clone)]
pub struct SimCard(pub Arc<Mutex<VirtualCard>>);

impl SimCard {
    pub fn new(config: CardConfig) -> Self {
        SimCard(Arc::new(Mutex::new(VirtualCard::new(config))))
    }
    pub fn scp03() -> Self {
        Self::new(CardConfig::default())
    }
    pub fn scp02() -> Self {
        Self::new(CardConfig::scp02())
    }
}

impl CardChannel for SimCard {
    fn transmit_raw(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.lock().expect("card lock").transmit(capdu))
    }
    fn atr(&self) -> Vec<u8> {
        self.0.lock().expect("card lock").atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.0.lock().expect("card lock").reset();
        Ok(())
    }
    fn name(&self) -> String {
        "virtual card (test)".into()
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
