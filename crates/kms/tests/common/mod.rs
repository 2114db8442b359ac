//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kms::{Component, Key, KeyKind, MasterKey, SoftwareKeyStore};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

mod softhsm;
pub use softhsm::MODULE;
pub const PIN: &str = "1234";

/// One known-answer line of `derive_full.txt` / `derive_kcv.txt`.
#[derive(Debug, Clone)]
pub struct Vector {
    pub kind: KeyKind,
    pub master: Vec<u8>,
    pub kdd: [u8; 10],
    /// ENC, MAC, DEK: full key or KCV hex, `None` if the source does not give it.
    pub expect: [Option<String>; 3],
}

fn parse_vectors(text: &str) -> Vec<Vector> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kind = match f[0] {
                "3DES" => KeyKind::Des3,
                "AES" => KeyKind::Aes,
                k => panic!("kind {k}"),
            };
            let opt = |s: &str| (s != "-").then(|| s.to_ascii_uppercase());
            Vector {
                kind,
                master: apdu::parse_hex(f[1]).unwrap(),
                kdd: apdu::parse_hex(f[2]).unwrap().try_into().unwrap(),
                expect: [opt(f[3]), opt(f[4]), opt(f[5])],
            }
        })
        .collect()
}

/// Full derived keys (OpenJavaCard EMV, GlobalPlatformPro KDF3).
pub fn full_vectors() -> Vec<Vector> {
    parse_vectors(include_str!("../vectors/derive_full.txt"))
}

/// Derived keys checked by KCV (GlobalPlatformPro).
pub fn kcv_vectors() -> Vec<Vector> {
    parse_vectors(include_str!("../vectors/derive_kcv.txt"))
}

/// Splits a key into two components the way two custodians would hold it, each with
/// the KCV they would write down.
pub fn split(kind: KeyKind, key: &[u8]) -> Vec<Component> {
    let c1: Vec<u8> = (0..key.len())
        .map(|i| (i as u8).wrapping_mul(37) ^ 0x5A)
        .collect();
    let c2: Vec<u8> = key.iter().zip(&c1).map(|(a, b)| a ^ b).collect();
    [c1, c2]
        .iter()
        .map(|c| Component::new(c, Key::new(kind, c).unwrap().kcv()))
        .collect()
}

pub fn check_vector(v: &Vector, keys: &kms::StaticKeys) {
    for (key, want) in [&keys.enc, &keys.mac, &keys.dek].into_iter().zip(&v.expect) {
        let Some(want) = want else { continue };
        if want.len() == 6 {
            assert_eq!(&apdu::hex(&key.kcv()), want, "KCV for {v:?}");
        } else {
            assert_eq!(&apdu::hex(key.expose()), want, "key for {v:?}");
        }
    }
}

pub fn software_store(dir: &Path) -> SoftwareKeyStore {
    SoftwareKeyStore::create(dir.join("keys.json"), MasterKey::generate().unwrap()).unwrap()
}

/// A new software keystore `keys.json` in `dir`: its path, its master key (hex) and the
/// store.
pub fn software_store_at(dir: &Path) -> (PathBuf, String, SoftwareKeyStore) {
    let path = dir.join("keys.json");
    let master = MasterKey::generate().unwrap();
    let master_hex = master.expose_hex().to_string();
    let store = SoftwareKeyStore::create(&path, master).unwrap();
    (path, master_hex, store)
}

/// A configuration string for a software keystore `file` in `dir`, with a new master key
/// in the file `dir/master`.
pub fn software_config(dir: &Path, file: &str) -> String {
    let master_file = dir.join("master");
    std::fs::write(
        &master_file,
        MasterKey::generate().unwrap().expose_hex().as_str(),
    )
    .unwrap();
    format!(
        "file:{}?master-key-file={}",
        dir.join(file).display(),
        master_file.display()
    )
}

/// One change to a keystore file's JSON.
pub type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Applies each edit in turn to the keystore file at `path`: every edited file must fail to
/// open under the master key `master_hex` with an error `refused` accepts. The original is
/// then put back, and opens.
pub fn assert_edits_refused(
    path: &Path,
    master_hex: &str,
    edits: &[Edit],
    refused: fn(&kms::Error) -> bool,
) {
    let original = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&original).unwrap();
    for (i, edit) in edits.iter().enumerate() {
        let mut j = json.clone();
        edit(&mut j);
        std::fs::write(path, serde_json::to_vec(&j).unwrap()).unwrap();
        let e = SoftwareKeyStore::open(path, MasterKey::from_hex(master_hex).unwrap()).unwrap_err();
        assert!(refused(&e), "edit {i}: {e}");
    }
    std::fs::write(path, &original).unwrap();
    SoftwareKeyStore::open(path, MasterKey::from_hex(master_hex).unwrap()).unwrap();
}

/// The SoftHSM2 fixture, or `return` from the test (skipped) when there is none.
#[allow(unused_macros)]
macro_rules! hsm_or_skip {
    () => {
        match hsm_turn() {
            Some(h) => h,
            None => return,
        }
    };
}

/// SoftHSM2 now and then answers `CKR_GENERAL_ERROR` to a `C_CreateObject` made while another
/// thread of the process works on the same token (seen in CI in two test binaries, with the
/// store's own per-token lock held for the write): the PKCS#11 tests of one process take
/// turns, each holding this lock for its whole run ([`hsm_turn`]).
static HSM_TURN: Mutex<()> = Mutex::new(());

/// The SoftHSM2 fixture with this test's turn on it (see [`HSM_TURN`]).
pub struct HsmTurn {
    hsm: &'static Hsm,
    _turn: MutexGuard<'static, ()>,
}

impl Deref for HsmTurn {
    type Target = Hsm;
    fn deref(&self) -> &Hsm {
        self.hsm
    }
}

/// [`hsm`], and the turn of the calling test: held until the returned value is dropped.
pub fn hsm_turn() -> Option<HsmTurn> {
    let hsm = hsm()?;
    let turn = HSM_TURN.lock().unwrap_or_else(PoisonError::into_inner);
    Some(HsmTurn { hsm, _turn: turn })
}

/// A SoftHSM2 set-up shared by every test of the process: a token directory with three
/// tokens (`cw-test`, `cw-wrap`, `cw-pin`), all with user PIN 1234. SoftHSM2 reads
/// `SOFTHSM2_CONF` once, at `C_Initialize`, so it is set before any PKCS#11 call.
pub struct Hsm {
    pub dir: PathBuf,
    pub pin_file: PathBuf,
}

/// The SoftHSM2 fixture, or `None` (test skipped) when SoftHSM2 is not installed. With
/// `CARDWRIGHT_HSM_TESTS=1` a missing SoftHSM2 fails the test instead.
pub fn hsm() -> Option<&'static Hsm> {
    static HSM: OnceLock<Option<Hsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        if !softhsm::softhsm_installed("PKCS#11 tests") {
            return None;
        }
        // Kept for the whole process; removed by the OS's tmp cleaning.
        let dir = softhsm::make_tokens("cw-kms-softhsm", &["cw-test", "cw-wrap", "cw-pin"], PIN);
        let pin_file = dir.join("pin");
        Some(Hsm { dir, pin_file })
    })
    .as_ref()
}

impl Hsm {
    pub fn config(&self, token: &str, backup_wrap: bool) -> String {
        format!(
            "pkcs11:{MODULE}?token={token}&pin-file={}{}",
            self.pin_file.display(),
            if backup_wrap { "&backup=wrap" } else { "" }
        )
    }

    pub fn store(&self, token: &str, backup_wrap: bool) -> kms::Pkcs11KeyStore {
        let cfg: kms::StoreConfig = self.config(token, backup_wrap).parse().unwrap();
        let kms::StoreConfig::Pkcs11(c) = cfg else {
            unreachable!()
        };
        kms::Pkcs11KeyStore::open(&c).unwrap()
    }
}

/// A category name unique to one test (tests share the token).
pub fn cat(test: &str) -> String {
    format!("t/{test}")
}
