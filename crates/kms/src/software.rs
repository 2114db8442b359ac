//! The software keystore: one JSON file, every base key sealed with AES-256-GCM under the
//! master key.
//!
//! ```json
//! {
//!   "format": "cardwright-kms-software/1",
//!   "master_check": "<nonce ‖ GCM(master, constant)>",
//!   "keys": [ { "category": "gold", "version": 1, "kind": "AES", "len": 16, "kcv": "E79C05",
//!               "created": "…", "expires": null, "retired": false,
//!               "sealed": "<nonce(12) ‖ AES-256-GCM ciphertext ‖ tag(16)>" } ],
//!   "signing_keys": [ … ]
//! }
//! ```
//!
//! * Every key has its own random 96-bit nonce (NIST SP 800-38D §8.2.2). The additional
//!   authenticated data is the category and version (as required) **and** the rest of the
//!   metadata (kind, length, KCV, dates, retired flag): editing any of them in the file makes
//!   the entry fail to open ([`Error::Tampered`]). Retiring a key re-seals it.
//! * `signing_keys` (present only when there are some) holds sealed CA signing keys, see
//!   [`crate::SigningKeyStore`], and `agreement_keys` sealed key-agreement (ECKA) keys, see
//!   [`crate::AgreementKeyStore`], and `key_sets` sealed security-domain key sets, see
//!   [`crate::KeySetStore`], `secret_keys` sealed secret keys by label, see
//!   [`crate::SecretKeyStore`], and `data_objects` authenticated public objects, see
//!   [`crate::DataObjectStore`]; they are re-sealed on master key rotation too.
//! * `master_check` seals a constant: a wrong master key is reported as
//!   [`Error::WrongMasterKey`] even for an empty keystore.
//! * Writes are atomic ([`atomic_file::write()`]): a temporary file in the same directory
//!   (mode 0600), `fsync`, `rename` over the old file, `fsync` of the directory.
//! * One writer at a time, across processes: every change takes an exclusive lock on
//!   `<file>.lock`, re-reads the file, applies the change and writes it back, so two
//!   processes changing keys at the same instant both get their change in. Readers notice a
//!   changed file (size or modification time) on a cache miss or [`SoftwareKeyStore::reload`],
//!   so a CLI process can rotate keys while a server derives. Deleting or rolling back the
//!   whole file is not detected (keep backups and the audit log).

use crate::backup::{self, kcv3, kind_from_name, kind_name, BackupEntry};
use crate::master::{self, MasterKey};
use crate::types::{
    check_len, from_unix, newest, next_version, now_secs, parse_rfc3339, random_key, rfc3339,
    rotated_expiry, status_at, unix, validate_category,
};
use crate::{Backend, BaseKeyInfo, Error, KeyStore};
use scp::{Key, KeyKind, StaticKeys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

const FORMAT: &str = "cardwright-kms-software/1";
const CHECK_AAD: &[u8] = b"cardwright-kms-software/1 master-check";
const CHECK_PLAIN: &[u8] = b"Cardwright keystore master key check";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    format: String,
    master_check: String,
    keys: Vec<StoreKey>,
    /// CA signing keys (see `crate::signing`); absent in files without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    signing_keys: Vec<crate::signing::StoredSigningKey>,
    /// Key-agreement (ECKA) keys (see `crate::agreement`); absent in files without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    agreement_keys: Vec<crate::agreement::StoredAgreementKey>,
    /// Security-domain key sets (see `crate::keyset`); absent in files without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    key_sets: Vec<crate::keyset::StoredKeySet>,
    /// Secret keys by label (see `crate::secret`); absent in files without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    secret_keys: Vec<crate::secret::StoredSecretKey>,
    /// Data objects by label (see `crate::data_object`); absent in files without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    data_objects: Vec<crate::data_object::StoredDataObject>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreKey {
    category: String,
    version: u32,
    kind: String,
    len: usize,
    kcv: String,
    created: String,
    expires: Option<String>,
    retired: bool,
    sealed: String,
}

#[derive(Clone, PartialEq, Eq)]
struct Meta {
    category: String,
    version: u32,
    kind: KeyKind,
    len: usize,
    kcv: [u8; 3],
    created: i64,
    expires: Option<i64>,
    retired: bool,
}

impl Meta {
    /// AAD: a label, then every metadata field (category and version first), fixed layout.
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(64 + self.category.len());
        a.extend_from_slice(b"cardwright-kms-software/1 key\0");
        a.push(u8::try_from(self.category.len()).unwrap_or(u8::MAX));
        a.extend_from_slice(self.category.as_bytes());
        a.extend_from_slice(&self.version.to_be_bytes());
        a.push(self.kind.key_type());
        a.push(u8::try_from(self.len).unwrap_or(u8::MAX));
        a.extend_from_slice(&self.kcv);
        a.extend_from_slice(&self.created.to_be_bytes());
        match self.expires {
            Some(e) => {
                a.push(1);
                a.extend_from_slice(&e.to_be_bytes());
            }
            None => a.push(0),
        }
        a.push(u8::from(self.retired));
        a
    }

    fn info(&self, now: SystemTime) -> BaseKeyInfo {
        let expires = self.expires.map(from_unix);
        BaseKeyInfo {
            category: self.category.clone(),
            version: self.version,
            kind: self.kind,
            len: self.len,
            kcv: self.kcv,
            created: from_unix(self.created),
            expires,
            backend: Backend::Software,
            status: status_at(self.retired, expires, now),
        }
    }
}

struct Entry {
    meta: Meta,
    key: Key,
    sealed: Vec<u8>,
}

pub(crate) struct State {
    entries: BTreeMap<(String, u32), Entry>,
    /// Sealed signing keys, authenticated when the file was read.
    pub(crate) signing: Vec<crate::signing::StoredSigningKey>,
    /// Sealed key-agreement keys, authenticated when the file was read.
    pub(crate) agreement: Vec<crate::agreement::StoredAgreementKey>,
    /// Sealed key sets, authenticated when the file was read.
    pub(crate) key_sets: Vec<crate::keyset::StoredKeySet>,
    /// Sealed secret keys, authenticated when the file was read.
    pub(crate) secret_keys: Vec<crate::secret::StoredSecretKey>,
    /// Data objects, authenticated when the file was read.
    pub(crate) data_objects: Vec<crate::data_object::StoredDataObject>,
    master_check: Vec<u8>,
    /// Size and modification time of the file when it was read.
    stamp: Option<(u64, SystemTime)>,
}

/// The software keystore (see the module documentation). Cheap to share: `&self` methods,
/// internally locked.
pub struct SoftwareKeyStore {
    pub(crate) path: PathBuf,
    pub(crate) master: MasterKey,
    pub(crate) state: RwLock<State>,
}

impl fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self
            .state
            .read()
            .map(|s| s.entries.len())
            .unwrap_or_default();
        f.debug_struct("SoftwareKeyStore")
            .field("path", &self.path)
            .field("keys", &n)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

fn read_state(path: &Path, master: &MasterKey) -> Result<State, Error> {
    let stamp = stamp(path);
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let format = |detail: String| Error::Format {
        path: path.to_path_buf(),
        detail,
    };
    let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    if file.format != FORMAT {
        return Err(format(format!("format {:?}, want {FORMAT:?}", file.format)));
    }
    let master_check = apdu::parse_hex(&file.master_check)
        .map_err(|_| format("master_check is not hex".into()))?;
    match master::open(master, CHECK_AAD, &master_check) {
        Some(p) if p.as_slice() == CHECK_PLAIN => {}
        _ => return Err(Error::WrongMasterKey(path.to_path_buf())),
    }
    let mut entries = BTreeMap::new();
    for (i, k) in file.keys.into_iter().enumerate() {
        let bad = |what: &str| format(format!("key {}: {what}", i + 1));
        validate_category(&k.category)?;
        let kind = kind_from_name(&k.kind).ok_or_else(|| bad("unknown kind"))?;
        check_len(kind, k.len)?;
        let meta = Meta {
            category: k.category,
            version: k.version,
            kind,
            len: k.len,
            kcv: kcv3(&k.kcv).ok_or_else(|| bad("bad kcv"))?,
            created: parse_rfc3339(&k.created).ok_or_else(|| bad("bad created date"))?,
            expires: match &k.expires {
                None => None,
                Some(t) => Some(parse_rfc3339(t).ok_or_else(|| bad("bad expiry date"))?),
            },
            retired: k.retired,
        };
        let sealed = apdu::parse_hex(&k.sealed).map_err(|_| bad("sealed key is not hex"))?;
        let tampered = || Error::Tampered {
            path: path.to_path_buf(),
            category: meta.category.clone(),
            version: meta.version,
        };
        let plain = master::open(master, &meta.aad(), &sealed).ok_or_else(tampered)?;
        let key = Key::new(kind, &plain).map_err(|_| tampered())?;
        if key.len() != meta.len || key.kcv() != meta.kcv {
            return Err(tampered());
        }
        let id = (meta.category.clone(), meta.version);
        if entries.contains_key(&id) {
            return Err(bad("duplicate category and version"));
        }
        entries.insert(id, Entry { meta, key, sealed });
    }
    for k in &file.signing_keys {
        k.check(path, master)?;
    }
    for k in &file.agreement_keys {
        k.check(path, master)?;
    }
    for (i, k) in file.key_sets.iter().enumerate() {
        k.check(path, master)?;
        if file.key_sets[..i].iter().any(|o| o.label() == k.label()) {
            return Err(format(format!("key set {:?} appears twice", k.label())));
        }
    }
    for (i, k) in file.secret_keys.iter().enumerate() {
        k.check(path, master)?;
        if file.secret_keys[..i].iter().any(|o| o.label() == k.label()) {
            return Err(format(format!("secret key {:?} appears twice", k.label())));
        }
    }
    for (i, d) in file.data_objects.iter().enumerate() {
        d.check(path, master)?;
        if file.data_objects[..i]
            .iter()
            .any(|o| o.label() == d.label())
        {
            return Err(format(format!("data object {:?} appears twice", d.label())));
        }
    }
    Ok(State {
        entries,
        signing: file.signing_keys,
        agreement: file.agreement_keys,
        key_sets: file.key_sets,
        secret_keys: file.secret_keys,
        data_objects: file.data_objects,
        master_check,
        stamp,
    })
}

fn write_state(path: &Path, state: &State) -> Result<Option<(u64, SystemTime)>, Error> {
    let file = StoreFile {
        format: FORMAT.into(),
        master_check: apdu::hex(&state.master_check),
        keys: state
            .entries
            .values()
            .map(|e| StoreKey {
                category: e.meta.category.clone(),
                version: e.meta.version,
                kind: kind_name(e.meta.kind).into(),
                len: e.meta.len,
                kcv: apdu::hex(&e.meta.kcv),
                created: rfc3339(e.meta.created),
                expires: e.meta.expires.map(rfc3339),
                retired: e.meta.retired,
                sealed: apdu::hex(&e.sealed),
            })
            .collect(),
        signing_keys: state.signing.clone(),
        agreement_keys: state.agreement.clone(),
        key_sets: state.key_sets.clone(),
        secret_keys: state.secret_keys.clone(),
        data_objects: state.data_objects.clone(),
    };
    let mut json = serde_json::to_vec_pretty(&file).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    atomic_write(path, &json)?;
    Ok(stamp(path))
}

/// Writes `bytes` to `path` atomically and readable by the owner only
/// ([`atomic_file::write()`]).
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    atomic_file::write(path, bytes, atomic_file::Options::private()).map_err(|source| Error::Save {
        path: path.to_path_buf(),
        source,
    })
}

/// An exclusive lock on `<key store>.lock`, held while a change reads, modifies and writes
/// the file, so that two processes changing keys at the same time both get their change in
/// (the second waits, then re-reads the file the first wrote). Released on drop, and by the
/// operating system if the process dies.
struct WriteLock {
    file: std::fs::File,
}

impl Drop for WriteLock {
    /// Unlocks explicitly: a child process forked by another thread before its `exec` shares
    /// the open file description (flock(2)), so closing our descriptor alone would keep the
    /// lock until that child execs.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl WriteLock {
    fn take(path: &Path) -> Result<WriteLock, Error> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        file.lock().map_err(|e| Error::io(&lock_path, e))?;
        Ok(WriteLock { file })
    }
}

impl SoftwareKeyStore {
    /// Creates a new, empty keystore file. Fails if the file exists.
    pub fn create(path: impl Into<PathBuf>, master: MasterKey) -> Result<SoftwareKeyStore, Error> {
        let path = path.into();
        let _lock = WriteLock::take(&path)?;
        if path.exists() {
            return Err(Error::AlreadyExists(path));
        }
        let mut state = State {
            entries: BTreeMap::new(),
            signing: Vec::new(),
            agreement: Vec::new(),
            key_sets: Vec::new(),
            secret_keys: Vec::new(),
            data_objects: Vec::new(),
            master_check: master::seal(&master, CHECK_AAD, CHECK_PLAIN)?,
            stamp: None,
        };
        state.stamp = write_state(&path, &state)?;
        Ok(SoftwareKeyStore {
            path,
            master,
            state: RwLock::new(state),
        })
    }

    /// Opens an existing keystore: checks the master key, opens and authenticates every
    /// entry.
    pub fn open(path: impl Into<PathBuf>, master: MasterKey) -> Result<SoftwareKeyStore, Error> {
        let path = path.into();
        let state = read_state(&path, &master)?;
        Ok(SoftwareKeyStore {
            path,
            master,
            state: RwLock::new(state),
        })
    }

    /// Opens the keystore, creating an empty one if the file does not exist.
    pub fn open_or_create(
        path: impl Into<PathBuf>,
        master: MasterKey,
    ) -> Result<SoftwareKeyStore, Error> {
        let path = path.into();
        if path.exists() {
            SoftwareKeyStore::open(path, master)
        } else {
            SoftwareKeyStore::create(path, master)
        }
    }

    /// The keystore file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file (another process may have changed it).
    pub fn reload(&self) -> Result<(), Error> {
        let fresh = read_state(&self.path, &self.master)?;
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Re-seals every key under a new master key (master key rotation) and rewrites the
    /// file. The old master key no longer opens it.
    pub fn change_master_key(&mut self, new: MasterKey) -> Result<(), Error> {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _lock = WriteLock::take(&self.path)?;
        let old = read_state(&self.path, &self.master)?;
        let mut entries = BTreeMap::new();
        for (id, e) in old.entries {
            let sealed = master::seal(&new, &e.meta.aad(), e.key.expose())?;
            entries.insert(id, Entry { sealed, ..e });
        }
        let signing = old
            .signing
            .iter()
            .map(|k| k.reseal(&self.path, &self.master, &new))
            .collect::<Result<Vec<_>, Error>>()?;
        let agreement = old
            .agreement
            .iter()
            .map(|k| k.reseal(&self.path, &self.master, &new))
            .collect::<Result<Vec<_>, Error>>()?;
        let key_sets = old
            .key_sets
            .iter()
            .map(|k| k.reseal(&self.path, &self.master, &new))
            .collect::<Result<Vec<_>, Error>>()?;
        let secret_keys = old
            .secret_keys
            .iter()
            .map(|k| k.reseal(&self.path, &self.master, &new))
            .collect::<Result<Vec<_>, Error>>()?;
        let data_objects = old
            .data_objects
            .iter()
            .map(|d| d.reseal(&self.path, &self.master, &new))
            .collect::<Result<Vec<_>, Error>>()?;
        let mut fresh = State {
            entries,
            signing,
            agreement,
            key_sets,
            secret_keys,
            data_objects,
            master_check: master::seal(&new, CHECK_AAD, CHECK_PLAIN)?,
            stamp: None,
        };
        fresh.stamp = write_state(&self.path, &fresh)?;
        *state = fresh;
        self.master = new;
        Ok(())
    }

    /// Reloads if the file changed since it was read.
    pub(crate) fn refresh_if_changed(&self) -> Result<(), Error> {
        let current = stamp(&self.path);
        let known = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp;
        if current != known {
            self.reload()?;
        }
        Ok(())
    }

    /// Runs a change: re-reads the file, applies `f` to the fresh state, writes the file,
    /// then swaps the state in. On error nothing is written and the state is unchanged.
    pub(crate) fn mutate<T>(
        &self,
        f: impl FnOnce(&mut State, &MasterKey) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let _lock = WriteLock::take(&self.path)?;
        let mut fresh = read_state(&self.path, &self.master)?;
        let out = f(&mut fresh, &self.master)?;
        fresh.stamp = write_state(&self.path, &fresh)?;
        *guard = fresh;
        Ok(out)
    }

    fn add(
        &self,
        category: &str,
        key: Key,
        expires: Option<SystemTime>,
        version: Option<u32>,
    ) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let now = now_secs();
        if expires.is_some_and(|e| e <= now) {
            return Err(Error::ExpiryInPast);
        }
        self.mutate(|state, master| {
            let version = version.unwrap_or_else(|| next_version(&infos(state, now), category));
            let meta = Meta {
                category: category.to_string(),
                version,
                kind: key.kind(),
                len: key.len(),
                kcv: key.kcv(),
                created: unix(now),
                expires: expires.map(unix),
                retired: false,
            };
            let sealed = master::seal(master, &meta.aad(), key.expose())?;
            let info = meta.info(now);
            state
                .entries
                .insert((category.to_string(), version), Entry { meta, key, sealed });
            Ok(info)
        })
    }
}

fn infos(state: &State, now: SystemTime) -> Vec<BaseKeyInfo> {
    state.entries.values().map(|e| e.meta.info(now)).collect()
}

impl crate::sealed::StoreBaseKey for SoftwareKeyStore {
    fn store_base_key(
        &self,
        category: &str,
        key: Key,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        self.add(category, key, expires, None)
    }
}

impl KeyStore for SoftwareKeyStore {
    fn backend(&self) -> Backend {
        Backend::Software
    }

    fn generate_base_key(
        &self,
        category: &str,
        kind: KeyKind,
        len: usize,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let key = random_key(kind, len)?;
        self.add(category, key, expires, None)
    }

    fn list_at(&self, at: SystemTime) -> Result<Vec<BaseKeyInfo>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(infos(&state, at))
    }

    fn rotate(&self, category: &str) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let list = self.list()?;
        let prev = newest(&list, category).ok_or_else(|| Error::NotFound {
            category: category.into(),
            version: None,
        })?;
        let key = random_key(prev.kind, prev.len)?;
        let expires = rotated_expiry(prev, now_secs());
        self.add(category, key, expires, None)
    }

    fn retire(&self, category: &str, version: u32) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        self.mutate(|state, master| {
            let e = state
                .entries
                .get_mut(&(category.to_string(), version))
                .ok_or_else(|| Error::NotFound {
                    category: category.into(),
                    version: Some(version),
                })?;
            if !e.meta.retired {
                e.meta.retired = true;
                e.sealed = master::seal(master, &e.meta.aad(), e.key.expose())?;
            }
            Ok(e.meta.info(SystemTime::now()))
        })
    }

    fn derive_for_kdd(
        &self,
        category: &str,
        version: u32,
        kdd: &[u8; 10],
    ) -> Result<StaticKeys, Error> {
        let id = (category.to_string(), version);
        let derive = |state: &State| -> Option<Result<StaticKeys, Error>> {
            let e = state.entries.get(&id)?;
            Some(if e.meta.retired {
                Err(Error::Retired {
                    category: category.into(),
                    version,
                })
            } else {
                crate::derive_in_software(&e.key, kdd)
            })
        };
        if let Some(r) = derive(&self.state.read().unwrap_or_else(PoisonError::into_inner)) {
            return r;
        }
        // Not known: maybe another process added it.
        self.refresh_if_changed()?;
        derive(&self.state.read().unwrap_or_else(PoisonError::into_inner)).unwrap_or_else(|| {
            validate_category(category)?;
            Err(Error::NotFound {
                category: category.into(),
                version: Some(version),
            })
        })
    }

    fn backup(&self, kek: &Key) -> Result<Vec<u8>, Error> {
        self.refresh_if_changed()?;
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut entries = Vec::with_capacity(state.entries.len());
        for e in state.entries.values() {
            entries.push(BackupEntry {
                category: e.meta.category.clone(),
                version: e.meta.version,
                kind: e.meta.kind,
                len: e.meta.len,
                kcv: e.meta.kcv,
                created: e.meta.created,
                expires: e.meta.expires,
                retired: e.meta.retired,
                wrapped: backup::wrap(kek, e.key.expose())?,
            });
        }
        backup::encode(kek, unix(SystemTime::now()), &entries)
    }

    fn restore(&self, backup_bytes: &[u8], kek: &Key) -> Result<Vec<BaseKeyInfo>, Error> {
        let entries = backup::decode(kek, backup_bytes)?;
        let mut keys = Vec::with_capacity(entries.len());
        for e in &entries {
            keys.push(backup::unwrap_entry(kek, e)?);
        }
        self.mutate(|state, master| {
            // Check everything before changing anything.
            for e in &entries {
                if let Some(old) = state.entries.get(&(e.category.clone(), e.version)) {
                    if old.meta.kcv != e.kcv || old.meta.kind != e.kind {
                        return Err(Error::Conflict {
                            category: e.category.clone(),
                            version: e.version,
                            existing: apdu::hex(&old.meta.kcv),
                            incoming: apdu::hex(&e.kcv),
                        });
                    }
                }
            }
            let now = SystemTime::now();
            let mut added = Vec::new();
            for (e, key) in entries.iter().zip(keys) {
                let id = (e.category.clone(), e.version);
                if state.entries.contains_key(&id) {
                    continue;
                }
                let meta = Meta {
                    category: e.category.clone(),
                    version: e.version,
                    kind: e.kind,
                    len: e.len,
                    kcv: e.kcv,
                    created: e.created,
                    expires: e.expires,
                    retired: e.retired,
                };
                let sealed = master::seal(master, &meta.aad(), key.expose())?;
                added.push(meta.info(now));
                state.entries.insert(id, Entry { meta, key, sealed });
            }
            Ok(added)
        })
    }
}
