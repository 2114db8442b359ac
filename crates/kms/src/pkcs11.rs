//! The PKCS#11 backend (an HSM; SoftHSM2 in tests), through the `cryptoki` crate.
//!
//! # Objects
//!
//! A base key is a secret-key token object:
//!
//! | attribute | value |
//! |---|---|
//! | `CKA_LABEL` | `cw:<category>:<version>` |
//! | `CKA_KEY_TYPE` | `CKK_DES2` (16 bytes), `CKK_DES3` (24) or `CKK_AES` |
//! | `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, `CKA_MODIFIABLE` | true |
//! | `CKA_EXTRACTABLE` | false (true with `backup=wrap`) |
//! | `CKA_ENCRYPT` | true (3DES-ECB derivation, KCV) — false once retired |
//! | `CKA_SIGN` | AES only: true (CMAC derivation) — false once retired |
//! | `CKA_DECRYPT`, `CKA_VERIFY`, `CKA_WRAP`, `CKA_UNWRAP`, `CKA_DERIVE` | false |
//! | `CKA_ALLOWED_MECHANISMS` | 3DES: `CKM_DES3_ECB`; AES: `CKM_AES_ECB`, `CKM_AES_CMAC` |
//! | `CKA_ID` | `"cw1"` ‖ GP key check value (3) ‖ key length (1) ‖ created ‖ `00`, or `01` ‖ expiry (Unix seconds, signed big-endian) |
//!
//! Creation and expiry live in `CKA_ID` rather than in `CKA_START_DATE`/`CKA_END_DATE`:
//! SoftHSM2 (through 2.6) stores those two in the clear on private objects but then tries to
//! decrypt them when read, so `C_GetAttributeValue` fails with `CKR_GENERAL_ERROR`
//! (SoftHSMv2 issues #655, #804); `CK_DATE` would also keep days only. Retiring a key clears
//! `CKA_ENCRYPT` and `CKA_SIGN`: the token itself then refuses to derive with it.
//!
//! # Derivation inside the token
//!
//! * 3DES / EMV CPG 2.1: `C_Encrypt(CKM_DES3_ECB)` of the 16-byte derivation block
//!   (`K4..K9 F0 k ‖ K4..K9 0F k`), whose output *is* the card key. SoftHSM2 offers
//!   `CKM_DES3_ECB_ENCRYPT_DATA` for `C_DeriveKey`, but `cryptoki` 0.12 has no safe way to
//!   name that mechanism (its `MechanismType` for it cannot be built without `unsafe`, which
//!   this workspace forbids), and the derived key would have to be created non-sensitive
//!   and read back anyway because the card keys leave the HSM to open the secure channel.
//!   The bytes are the same either way.
//! * AES / KDF3: `C_Sign(CKM_AES_CMAC)` over each SP 800-108 PRF input
//!   (`i ‖ 00 00 00 ‖ k ‖ 00 ‖ KDD`).
//!
//! The card keys returned are therefore byte-identical to the software path
//! ([`crate::derive_in_software`]); the tests check it.
//!
//! # Backup
//!
//! `C_WrapKey(CKM_AES_KEY_WRAP)` (RFC 3394) under the KEK, imported as a session object for
//! the duration of the call. PKCS#11 refuses to wrap a key whose `CKA_EXTRACTABLE` is false
//! (`CKR_KEY_UNEXTRACTABLE`), which is the default here: [`KeyStore::backup`] then returns
//! [`Error::NotExtractable`]. Restore (`C_UnwrapKey`) always works and produces
//! non-extractable keys unless `backup=wrap` is configured.
//!
//! # Sessions
//!
//! One read/write session logs in and stays open while the store lives (the login belongs
//! to the application, not the session, PKCS#11 v2.40 §5.6); work runs on pooled sessions
//! that close when dropped. The module is initialised once per process and path. A second
//! store opened on a token this process is already logged in to gets
//! `CKR_USER_ALREADY_LOGGED_IN` and proceeds: its PIN is then not checked again.
//! Changes (and listings) on one token are serialised within the process; across processes
//! run one administrating process at a time.

use crate::backup::{self, BackupEntry};
use crate::config::{Pkcs11Config, SlotSelector};
use crate::kdd::{emv_block, kdf3_block};
use crate::types::{
    check_len, from_unix, newest, next_version, now_secs, rotated_expiry, status_at, unix,
    validate_category,
};
use crate::{Backend, BaseKeyInfo, Error, KeyStore};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use scp::{Key, KeyKind, StaticKeys};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::SystemTime;
use zeroize::{Zeroize, Zeroizing};

const LABEL_PREFIX: &str = "cw:";
const MAX_IDLE_SESSIONS: usize = 16;
const ID_MAGIC: &[u8] = b"cw1";

/// The module contexts of this process, one per module path: `C_Initialize` may be called
/// only once per process (PKCS#11 v2.40 §5.4), and SoftHSM2 reads its configuration then.
fn context(module: &std::path::Path) -> Result<Pkcs11, Error> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let what = module.display().to_string();
    let ctx = Pkcs11::new(module).map_err(|e| Error::pkcs11("C_GetFunctionList", &what, e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(Error::pkcs11("C_Initialize", what, e)),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// The lock serialising changes to one token within this process (all stores on it).
fn admin_lock(module: &std::path::Path, slot: u64) -> Arc<Mutex<()>> {
    type Locks = HashMap<(PathBuf, u64), Arc<Mutex<()>>>;
    static LOCKS: OnceLock<Mutex<Locks>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(map.entry((module.to_path_buf(), slot)).or_default())
}

/// How a base key is protected inside the token, as the token reports it
/// ([`Pkcs11KeyStore::protection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_TOKEN`: a persistent token object.
    pub token: bool,
    /// `CKA_SENSITIVE`: the value cannot be read.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key can be wrapped.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: sensitive since it was made (false for imported keys).
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: never was extractable (false for imported keys).
    pub never_extractable: bool,
    /// Whether `C_GetAttributeValue(CKA_VALUE)` returned the key value. Must be false.
    pub value_readable: bool,
}

#[derive(Debug, Clone, Copy)]
struct KeyRef {
    handle: ObjectHandle,
    kind: KeyKind,
    len: usize,
    retired: bool,
}

/// What a base key object is about to be (or is).
struct Spec<'a> {
    category: &'a str,
    version: u32,
    kind: KeyKind,
    len: usize,
    created: SystemTime,
    expires: Option<SystemTime>,
}

impl Spec<'_> {
    fn label(&self) -> String {
        label(self.category, self.version)
    }

    fn info(&self, kcv: [u8; 3], retired: bool, at: SystemTime) -> BaseKeyInfo {
        let expires = self.expires;
        BaseKeyInfo {
            category: self.category.into(),
            version: self.version,
            kind: self.kind,
            len: self.len,
            kcv,
            created: self.created,
            expires,
            backend: Backend::Pkcs11,
            status: status_at(retired, expires, at),
        }
    }
}

/// A PKCS#11 keystore (see the module documentation).
pub struct Pkcs11KeyStore {
    pub(crate) ctx: Pkcs11,
    pub(crate) slot: Slot,
    token_label: String,
    config: Pkcs11Config,
    /// Never used for work: keeps the login alive while the store (or a signing key from
    /// it, which holds a clone) lives.
    pub(crate) login: Arc<Mutex<Session>>,
    pool: Mutex<Vec<Session>>,
    handles: RwLock<HashMap<(String, u32), KeyRef>>,
    /// Serialises changes and listings on this token within the process (version
    /// numbering; SoftHSM2 can show half-written objects to a concurrent reader).
    admin: Arc<Mutex<()>>,
    mechanisms: Vec<MechanismType>,
    /// Where this token runs the X9.63 KDF of key set transport (found on first use).
    pub(crate) transport_kdf: OnceLock<crate::keyset::KdfPlace>,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("module", &self.config.module)
            .field("slot", &self.slot.id())
            .field("token", &self.token_label)
            .field("backup_wrap", &self.config.backup_wrap)
            .finish_non_exhaustive()
    }
}

/// A pooled session; goes back to the pool (or closes) when dropped.
pub(crate) struct Pooled<'a> {
    store: &'a Pkcs11KeyStore,
    session: Option<Session>,
}

impl Deref for Pooled<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Only `drop` takes the session out.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let mut pool = self
                .store
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pool.len() < MAX_IDLE_SESSIONS {
                pool.push(s);
            }
        }
    }
}

/// A session object (the KEK during backup/restore) destroyed when dropped.
pub(crate) struct TempObject<'a> {
    pub(crate) session: &'a Session,
    pub(crate) handle: ObjectHandle,
}

impl Drop for TempObject<'_> {
    fn drop(&mut self) {
        let _ = self.session.destroy_object(self.handle);
    }
}

/// Zeroizes `CKA_VALUE` in a template when dropped (the key bytes passed to the token).
pub(crate) struct SecretTemplate(pub(crate) Vec<Attribute>);

impl Drop for SecretTemplate {
    fn drop(&mut self) {
        for a in &mut self.0 {
            if let Attribute::Value(v) = a {
                v.zeroize();
            }
        }
    }
}

/// Every token object of `class` with a UTF-8 label, as (handle, label); `what` names the
/// objects in errors ("secret keys", "private keys").
pub(crate) fn labelled_token_objects(
    s: &Session,
    class: ObjectClass,
    what: &str,
) -> Result<Vec<(ObjectHandle, String)>, Error> {
    let handles = s
        .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
        .map_err(|e| Error::pkcs11("C_FindObjects", what, e))?;
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        let attrs = s
            .get_attributes(h, &[AttributeType::Label])
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", "key label", e))?;
        let label = attrs.into_iter().find_map(|a| match a {
            Attribute::Label(l) => String::from_utf8(l).ok(),
            _ => None,
        });
        if let Some(l) = label {
            out.push((h, l));
        }
    }
    Ok(out)
}

fn label(category: &str, version: u32) -> String {
    format!("{LABEL_PREFIX}{category}:{version}")
}

fn parse_label(label: &str) -> Option<(String, u32)> {
    let rest = label.strip_prefix(LABEL_PREFIX)?;
    let (cat, ver) = rest.rsplit_once(':')?;
    validate_category(cat).ok()?;
    Some((cat.to_string(), ver.parse().ok()?))
}

pub(crate) fn key_type(kind: KeyKind, len: usize) -> KeyType {
    match (kind, len) {
        (KeyKind::Des3, 16) => KeyType::DES2,
        (KeyKind::Des3, _) => KeyType::DES3,
        (KeyKind::Aes, _) => KeyType::AES,
    }
}

/// `CKA_ID` of a base key: `"cw1" ‖ KCV(3) ‖ length(1) ‖ created(8) ‖ 00`, or
/// `… ‖ 01 ‖ expires(8)` (times as big-endian signed Unix seconds).
fn encode_id(meta: &IdMeta) -> Vec<u8> {
    let mut id = Vec::with_capacity(24);
    id.extend_from_slice(ID_MAGIC);
    id.extend_from_slice(&meta.kcv);
    id.push(u8::try_from(meta.len).unwrap_or(0));
    id.extend_from_slice(&unix(meta.created).to_be_bytes());
    match meta.expires {
        Some(e) => {
            id.push(1);
            id.extend_from_slice(&unix(e).to_be_bytes());
        }
        None => id.push(0),
    }
    id
}

/// What `CKA_ID` records about a base key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdMeta {
    kcv: [u8; 3],
    len: usize,
    created: SystemTime,
    expires: Option<SystemTime>,
}

/// Reads a `CKA_ID` written by [`encode_id`].
fn decode_id(id: &[u8]) -> Option<IdMeta> {
    let rest = id.strip_prefix(ID_MAGIC)?;
    let kcv: [u8; 3] = rest.get(..3)?.try_into().ok()?;
    let len = usize::from(*rest.get(3)?);
    let created = i64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    let expires = match (rest.get(12)?, rest.len()) {
        (0, 13) => None,
        (1, 21) => Some(from_unix(i64::from_be_bytes(
            rest.get(13..21)?.try_into().ok()?,
        ))),
        _ => return None,
    };
    Some(IdMeta {
        kcv,
        len,
        created: from_unix(created),
        expires,
    })
}

impl Pkcs11KeyStore {
    /// Loads the module, finds the slot, logs the user in.
    pub fn open(config: &Pkcs11Config) -> Result<Pkcs11KeyStore, Error> {
        let ctx = context(&config.module)?;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("C_GetSlotList", "slots with a token", e))?;
        let mut chosen = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| Error::pkcs11("C_GetTokenInfo", format!("slot {}", slot.id()), e))?;
            let label = info.label().trim_end().to_string();
            let ok = match &config.slot {
                SlotSelector::Id(id) => slot.id() == *id,
                SlotSelector::Token(t) => label == *t,
                SlotSelector::First => true,
            };
            if ok {
                chosen = Some((slot, label));
                break;
            }
        }
        let (slot, token_label) = chosen.ok_or_else(|| {
            Error::Config(match &config.slot {
                SlotSelector::Id(id) => format!("no token in slot {id}"),
                SlotSelector::Token(t) => format!("no token labelled {t:?}"),
                SlotSelector::First => "no slot with a token".into(),
            })
        })?;
        let mechanisms = ctx
            .get_mechanism_list(slot)
            .map_err(|e| Error::pkcs11("C_GetMechanismList", &token_label, e))?;
        let anchor = ctx
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11("C_OpenSession", &token_label, e))?;
        let pin = config.pin.read()?;
        let auth = AuthPin::from(pin.as_str());
        match anchor.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => {
                return Err(Error::pkcs11(
                    "C_Login",
                    format!("user of {token_label}"),
                    e,
                ))
            }
        }
        Ok(Pkcs11KeyStore {
            ctx,
            slot,
            token_label,
            config: config.clone(),
            login: Arc::new(Mutex::new(anchor)),
            pool: Mutex::new(Vec::new()),
            handles: RwLock::new(HashMap::new()),
            admin: admin_lock(&config.module, slot.id()),
            mechanisms,
            transport_kdf: OnceLock::new(),
        })
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// The slot ID in use.
    pub fn slot_id(&self) -> u64 {
        self.slot.id()
    }

    pub(crate) fn session(&self) -> Result<Pooled<'_>, Error> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(|e| Error::pkcs11("C_OpenSession", &self.token_label, e))?,
        };
        Ok(Pooled {
            store: self,
            session: Some(session),
        })
    }

    pub(crate) fn need(&self, m: MechanismType, name: &'static str) -> Result<(), Error> {
        if self.mechanisms.contains(&m) {
            Ok(())
        } else {
            Err(Error::MissingMechanism(name))
        }
    }

    /// Reads how a base key is protected, and tries to read its value (which must fail).
    pub fn protection(&self, category: &str, version: u32) -> Result<KeyProtection, Error> {
        let r = self.lookup(category, version, false)?;
        let s = self.session()?;
        let what = label(category, version);
        read_protection(&s, r.handle, &what, &[AttributeType::Value])
    }

    /// Finds a base key object (cached). `usable`: fail with [`Error::Retired`] if retired.
    fn lookup(&self, category: &str, version: u32, usable: bool) -> Result<KeyRef, Error> {
        let id = (category.to_string(), version);
        let cached = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied();
        let r = match cached {
            Some(r) => r,
            None => {
                validate_category(category)?;
                let s = self.session()?;
                let r = self
                    .find(&s, category, version)?
                    .ok_or_else(|| Error::NotFound {
                        category: category.into(),
                        version: Some(version),
                    })?;
                self.handles
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, r);
                r
            }
        };
        if usable && r.retired {
            return Err(Error::Retired {
                category: category.into(),
                version,
            });
        }
        Ok(r)
    }

    fn forget(&self, category: &str, version: u32) {
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(category.to_string(), version));
    }

    fn find(&self, s: &Session, category: &str, version: u32) -> Result<Option<KeyRef>, Error> {
        let l = label(category, version);
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
                Attribute::Label(l.clone().into_bytes()),
            ])
            .map_err(|e| Error::pkcs11("C_FindObjects", &l, e))?;
        match found.as_slice() {
            [] => Ok(None),
            [h] => {
                let (kind, len, retired, _) = self.describe(s, *h, &l)?;
                Ok(Some(KeyRef {
                    handle: *h,
                    kind,
                    len,
                    retired,
                }))
            }
            _ => Err(Error::Config(format!(
                "token {} holds {} objects labelled {l}",
                self.token_label,
                found.len()
            ))),
        }
    }

    /// Kind, length, retired flag and `CKA_ID` metadata of a key object.
    fn describe(
        &self,
        s: &Session,
        h: ObjectHandle,
        what: &str,
    ) -> Result<(KeyKind, usize, bool, Option<IdMeta>), Error> {
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::KeyType,
                    AttributeType::ValueLen,
                    AttributeType::Encrypt,
                    AttributeType::Sign,
                    AttributeType::Id,
                ],
            )
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", what, e))?;
        let mut kt = None;
        let mut value_len = 0;
        let mut enc = false;
        let mut sign = false;
        let mut meta = None;
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kt = Some(t),
                Attribute::ValueLen(l) => value_len = usize::try_from(u64::from(l)).unwrap_or(0),
                Attribute::Encrypt(v) => enc = v,
                Attribute::Sign(v) => sign = v,
                Attribute::Id(id) => meta = decode_id(&id),
                _ => {}
            }
        }
        let (kind, len) = match kt {
            Some(t) if t == KeyType::DES2 => (KeyKind::Des3, 16),
            Some(t) if t == KeyType::DES3 => (KeyKind::Des3, 24),
            // SoftHSM2 leaves CKA_VALUE_LEN at 0 on unwrapped keys: use the recorded length.
            Some(t) if t == KeyType::AES => match (value_len, meta) {
                (0, Some(m)) => (KeyKind::Aes, m.len),
                (l, _) => (KeyKind::Aes, l),
            },
            _ => return Err(Error::Config(format!("{what} is not a 3DES or AES key"))),
        };
        check_len(kind, len)?;
        Ok((kind, len, !enc && !sign, meta))
    }

    /// The GP KCV computed inside the token (3DES-ECB of `00`×8 / AES-ECB of `01`×16).
    pub(crate) fn token_kcv(
        &self,
        s: &Session,
        h: ObjectHandle,
        kind: KeyKind,
        what: &str,
    ) -> Result<[u8; 3], Error> {
        let out = match kind {
            KeyKind::Des3 => s.encrypt(&Mechanism::Des3Ecb, h, &[0u8; 8]),
            KeyKind::Aes => s.encrypt(&Mechanism::AesEcb, h, &[1u8; 16]),
        }
        .map_err(|e| Error::pkcs11("C_Encrypt", format!("KCV of {what}"), e))?;
        out.get(..3)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Config(format!("token returned {} bytes for a KCV", out.len())))
    }

    fn template(&self, spec: &Spec<'_>) -> Vec<Attribute> {
        let aes = spec.kind == KeyKind::Aes;
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type(spec.kind, spec.len)),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(self.config.backup_wrap),
            Attribute::Modifiable(true),
            Attribute::Label(spec.label().into_bytes()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(false),
            Attribute::Sign(aes),
            Attribute::Verify(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::AllowedMechanisms(if aes {
                vec![MechanismType::AES_ECB, MechanismType::AES_CMAC]
            } else {
                vec![MechanismType::DES3_ECB]
            }),
        ]
    }

    /// After a key object was made: checks / records its KCV, caches the handle, returns
    /// its info. Destroys the object if the KCV is not the expected one.
    fn finish_new(
        &self,
        s: &Session,
        h: ObjectHandle,
        spec: &Spec<'_>,
        expect_kcv: Option<[u8; 3]>,
    ) -> Result<[u8; 3], Error> {
        let (category, version, kind, len) = (spec.category, spec.version, spec.kind, spec.len);
        let what = label(category, version);
        let kcv = match self.token_kcv(s, h, kind, &what) {
            Ok(k) => k,
            Err(e) => {
                let _ = s.destroy_object(h);
                return Err(e);
            }
        };
        if let Some(expected) = expect_kcv {
            if expected != kcv {
                let _ = s.destroy_object(h);
                return Err(Error::Config(format!(
                    "token computes KCV {} for {what}, expected {}; key not stored",
                    apdu::hex(&kcv),
                    apdu::hex(&expected)
                )));
            }
        }
        let id = encode_id(&IdMeta {
            kcv,
            len,
            created: spec.created,
            expires: spec.expires,
        });
        if let Err(e) = s.update_attributes(h, &[Attribute::Id(id)]) {
            let _ = s.destroy_object(h);
            return Err(Error::pkcs11(
                "C_SetAttributeValue",
                format!("CKA_ID of {what}"),
                e,
            ));
        }
        self.handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (category.to_string(), version),
                KeyRef {
                    handle: h,
                    kind,
                    len,
                    retired: false,
                },
            );
        Ok(kcv)
    }

    fn check_expiry(expires: Option<SystemTime>) -> Result<(), Error> {
        if expires.is_some_and(|e| e <= SystemTime::now()) {
            return Err(Error::ExpiryInPast);
        }
        Ok(())
    }

    /// Imports key bytes as the next version (used by import; the key is combined in
    /// software and handed to `C_CreateObject`).
    fn create(
        &self,
        category: &str,
        key: &Key,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        Pkcs11KeyStore::check_expiry(expires)?;
        let _admin = self.lock();
        let version = next_version(&self.list_locked(SystemTime::now())?, category);
        let spec = Spec {
            category,
            version,
            kind: key.kind(),
            len: key.len(),
            created: now_secs(),
            expires,
        };
        let mut t = self.template(&spec);
        t.push(Attribute::Id(encode_id(&IdMeta {
            kcv: key.kcv(),
            len: key.len(),
            created: spec.created,
            expires: spec.expires,
        })));
        t.push(Attribute::Value(key.expose().to_vec()));
        let t = SecretTemplate(t);
        let s = self.session()?;
        let h = s
            .create_object(&t.0)
            .map_err(|e| Error::pkcs11("C_CreateObject", spec.label(), e))?;
        drop(t);
        let kcv = self.finish_new(&s, h, &spec, Some(key.kcv()))?;
        Ok(spec.info(kcv, false, SystemTime::now()))
    }

    fn generate(
        &self,
        category: &str,
        kind: KeyKind,
        len: usize,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        check_len(kind, len)?;
        Pkcs11KeyStore::check_expiry(expires)?;
        let _admin = self.lock();
        let version = next_version(&self.list_locked(SystemTime::now())?, category);
        let spec = Spec {
            category,
            version,
            kind,
            len,
            created: now_secs(),
            expires,
        };
        let mut t = self.template(&spec);
        let mech = match (kind, len) {
            (KeyKind::Des3, 16) => Mechanism::Des2KeyGen,
            (KeyKind::Des3, _) => Mechanism::Des3KeyGen,
            (KeyKind::Aes, _) => {
                t.push(Attribute::ValueLen((len as u64).into()));
                Mechanism::AesKeyGen
            }
        };
        let s = self.session()?;
        let h = s
            .generate_key(&mech, &t)
            .map_err(|e| Error::pkcs11("C_GenerateKey", spec.label(), e))?;
        let kcv = self.finish_new(&s, h, &spec, None)?;
        Ok(spec.info(kcv, false, SystemTime::now()))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`KeyStore::list_at`] with the token lock held.
    fn list_locked(&self, at: SystemTime) -> Result<Vec<BaseKeyInfo>, Error> {
        let s = self.session()?;
        let mut out = Vec::new();
        for (h, l) in labelled_token_objects(&s, ObjectClass::SECRET_KEY, "secret keys")? {
            let Some((category, version)) = parse_label(&l) else {
                continue;
            };
            let (kind, len, retired, meta) = self.describe(&s, h, &l)?;
            // Objects made by other tools under our label scheme have no metadata.
            let (kcv, start, end) = match meta {
                Some(m) => (m.kcv, m.created, m.expires),
                None if !retired => (
                    self.token_kcv(&s, h, kind, &l)?,
                    SystemTime::UNIX_EPOCH,
                    None,
                ),
                None => ([0; 3], SystemTime::UNIX_EPOCH, None),
            };
            let spec = Spec {
                category: &category,
                version,
                kind,
                len,
                created: start,
                expires: end,
            };
            out.push(spec.info(kcv, retired, at));
        }
        out.sort_by(|a, b| (&a.category, a.version).cmp(&(&b.category, b.version)));
        Ok(out)
    }

    fn derive_with(&self, r: KeyRef, what: &str, kdd: &[u8; 10]) -> Result<StaticKeys, Error> {
        match r.kind {
            KeyKind::Des3 => self.need(MechanismType::DES3_ECB, "CKM_DES3_ECB")?,
            KeyKind::Aes => self.need(MechanismType::AES_CMAC, "CKM_AES_CMAC")?,
        }
        let s = self.session()?;
        let one = |k: u8| -> Result<Key, Error> {
            match r.kind {
                KeyKind::Des3 => {
                    let out = Zeroizing::new(
                        s.encrypt(&Mechanism::Des3Ecb, r.handle, &emv_block(kdd, k))
                            .map_err(|e| map_use_error("C_Encrypt", what, e))?,
                    );
                    Ok(Key::des3(&out)?)
                }
                KeyKind::Aes => {
                    let mut out = Zeroizing::new(Vec::with_capacity(48));
                    let mut i = 1u8;
                    while out.len() < r.len {
                        let block = Zeroizing::new(
                            s.sign(&Mechanism::AesCMac, r.handle, &kdf3_block(kdd, i, k))
                                .map_err(|e| map_use_error("C_Sign", what, e))?,
                        );
                        if block.len() != 16 {
                            return Err(Error::Config(format!(
                                "token returned a {}-byte AES-CMAC",
                                block.len()
                            )));
                        }
                        out.extend_from_slice(&block);
                        i += 1;
                    }
                    Ok(Key::aes(&out[..r.len])?)
                }
            }
        };
        Ok(StaticKeys {
            enc: one(1)?,
            mac: one(2)?,
            dek: one(3)?,
        })
    }

    /// Creates the KEK as a session object able to wrap and unwrap.
    fn kek_object<'s>(&self, s: &'s Session, kek: &Key) -> Result<TempObject<'s>, Error> {
        if kek.kind() != KeyKind::Aes {
            return Err(Error::BadKek);
        }
        self.need(MechanismType::AES_KEY_WRAP, "CKM_AES_KEY_WRAP")?;
        let t = SecretTemplate(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Label(b"cw-backup-kek".to_vec()),
            Attribute::Value(kek.expose().to_vec()),
        ]);
        let handle = s
            .create_object(&t.0)
            .map_err(|e| Error::pkcs11("C_CreateObject", "backup key-encryption key", e))?;
        Ok(TempObject { session: s, handle })
    }
}

/// Maps a failure to use a key: a key the token refuses to use was retired elsewhere.
fn map_use_error(call: &'static str, what: &str, e: CkError) -> Error {
    match e {
        CkError::Pkcs11(RvError::KeyFunctionNotPermitted, _) => match parse_label(what) {
            Some((category, version)) => Error::Retired { category, version },
            None => Error::pkcs11(call, what, e),
        },
        e => Error::pkcs11(call, what, e),
    }
}

impl crate::sealed::StoreBaseKey for Pkcs11KeyStore {
    fn store_base_key(
        &self,
        category: &str,
        key: Key,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        self.create(category, &key, expires)
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn backend(&self) -> Backend {
        Backend::Pkcs11
    }

    fn generate_base_key(
        &self,
        category: &str,
        kind: KeyKind,
        len: usize,
        expires: Option<SystemTime>,
    ) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        self.generate(category, kind, len, expires)
    }

    fn list_at(&self, at: SystemTime) -> Result<Vec<BaseKeyInfo>, Error> {
        let _admin = self.lock();
        self.list_locked(at)
    }

    fn rotate(&self, category: &str) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let list = self.list()?;
        let prev = newest(&list, category).ok_or_else(|| Error::NotFound {
            category: category.into(),
            version: None,
        })?;
        let expires = rotated_expiry(prev, now_secs());
        self.generate(category, prev.kind, prev.len, expires)
    }

    fn retire(&self, category: &str, version: u32) -> Result<BaseKeyInfo, Error> {
        validate_category(category)?;
        let _admin = self.lock();
        self.forget(category, version);
        let r = self.lookup(category, version, false)?;
        let what = label(category, version);
        if !r.retired {
            let s = self.session()?;
            s.update_attributes(
                r.handle,
                &[Attribute::Encrypt(false), Attribute::Sign(false)],
            )
            .map_err(|e| Error::pkcs11("C_SetAttributeValue", format!("retire {what}"), e))?;
            self.forget(category, version);
        }
        self.list_locked(SystemTime::now())?
            .into_iter()
            .find(|i| i.category == category && i.version == version)
            .ok_or(Error::NotFound {
                category: category.into(),
                version: Some(version),
            })
    }

    fn derive_for_kdd(
        &self,
        category: &str,
        version: u32,
        kdd: &[u8; 10],
    ) -> Result<StaticKeys, Error> {
        let r = self.lookup(category, version, true)?;
        let what = label(category, version);
        match self.derive_with(r, &what, kdd) {
            Err(Error::Pkcs11 {
                source: CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _),
                ..
            }) => {
                // The object went away (another process); look it up again once.
                self.forget(category, version);
                let r = self.lookup(category, version, true)?;
                self.derive_with(r, &what, kdd)
            }
            Err(e @ Error::Retired { .. }) => {
                self.forget(category, version);
                Err(e)
            }
            other => other,
        }
    }

    fn backup(&self, kek: &Key) -> Result<Vec<u8>, Error> {
        let _admin = self.lock();
        let list = self.list_locked(SystemTime::now())?;
        let s = self.session()?;
        let kek_obj = self.kek_object(&s, kek)?;
        let mut entries = Vec::with_capacity(list.len());
        for i in &list {
            let r = self.lookup(&i.category, i.version, false)?;
            let what = label(&i.category, i.version);
            let wrapped = s
                .wrap_key(&Mechanism::AesKeyWrap, kek_obj.handle, r.handle)
                .map_err(|e| match e {
                    CkError::Pkcs11(RvError::KeyUnextractable, _) => Error::NotExtractable {
                        category: i.category.clone(),
                        version: i.version,
                    },
                    e => Error::pkcs11("C_WrapKey", &what, e),
                })?;
            entries.push(BackupEntry {
                category: i.category.clone(),
                version: i.version,
                kind: i.kind,
                len: i.len,
                kcv: i.kcv,
                created: unix(i.created),
                expires: i.expires.map(unix),
                retired: i.status == crate::KeyStatus::Retired,
                wrapped,
            });
        }
        drop(kek_obj);
        backup::encode(kek, unix(SystemTime::now()), &entries)
    }

    fn restore(&self, backup_bytes: &[u8], kek: &Key) -> Result<Vec<BaseKeyInfo>, Error> {
        let entries = backup::decode(kek, backup_bytes)?;
        let _admin = self.lock();
        let existing = self.list_locked(SystemTime::now())?;
        let mut todo = Vec::new();
        for e in &entries {
            match existing
                .iter()
                .find(|i| i.category == e.category && i.version == e.version)
            {
                Some(i) if i.kcv == e.kcv && i.kind == e.kind => {}
                Some(i) => {
                    return Err(Error::Conflict {
                        category: e.category.clone(),
                        version: e.version,
                        existing: apdu::hex(&i.kcv),
                        incoming: apdu::hex(&e.kcv),
                    })
                }
                None => todo.push(e),
            }
        }
        let s = self.session()?;
        let kek_obj = self.kek_object(&s, kek)?;
        let mut added = Vec::new();
        for e in todo {
            let spec = Spec {
                category: &e.category,
                version: e.version,
                kind: e.kind,
                len: e.len,
                created: from_unix(e.created),
                expires: e.expires.map(from_unix),
            };
            // No CKA_VALUE_LEN: the length comes from the wrapped key (SoftHSM2 refuses it
            // in an unwrap template with CKR_ATTRIBUTE_READ_ONLY); checked by the KCV below.
            let mut t = self.template(&spec);
            t.push(Attribute::Id(encode_id(&IdMeta {
                kcv: e.kcv,
                len: e.len,
                created: spec.created,
                expires: spec.expires,
            })));
            let what = spec.label();
            let h = s
                .unwrap_key(&Mechanism::AesKeyWrap, kek_obj.handle, &e.wrapped, &t)
                .map_err(|err| match err {
                    CkError::Pkcs11(
                        RvError::WrappedKeyInvalid | RvError::EncryptedDataInvalid,
                        _,
                    ) => Error::BackupAuthentication,
                    err => Error::pkcs11("C_UnwrapKey", &what, err),
                })?;
            let kcv = self
                .finish_new(&s, h, &spec, Some(e.kcv))
                .map_err(|err| match err {
                    Error::Config(_) => Error::BackupAuthentication,
                    other => other,
                })?;
            if e.retired {
                s.update_attributes(h, &[Attribute::Encrypt(false), Attribute::Sign(false)])
                    .map_err(|err| {
                        Error::pkcs11("C_SetAttributeValue", format!("retire {what}"), err)
                    })?;
                self.forget(&e.category, e.version);
            }
            added.push(spec.info(kcv, e.retired, SystemTime::now()));
        }
        drop(kek_obj);
        Ok(added)
    }
}

/// How the object `handle` is protected, as the token reports it; `secret` names the
/// attributes that hold its key material (`CKA_VALUE`; for RSA private keys also
/// `CKA_PRIVATE_EXPONENT`), and `value_readable` says whether any of them can be read (it
/// must not). Whatever a misconfigured token hands back is zeroized at once.
pub(crate) fn read_protection(
    s: &Session,
    handle: ObjectHandle,
    what: &str,
    secret: &[AttributeType],
) -> Result<KeyProtection, Error> {
    let attrs = s
        .get_attributes(
            handle,
            &[
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
            ],
        )
        .map_err(|e| Error::pkcs11("C_GetAttributeValue", what, e))?;
    let mut p = KeyProtection {
        token: false,
        sensitive: false,
        extractable: true,
        always_sensitive: false,
        never_extractable: false,
        value_readable: false,
    };
    for a in attrs {
        match a {
            Attribute::Token(v) => p.token = v,
            Attribute::Sensitive(v) => p.sensitive = v,
            Attribute::Extractable(v) => p.extractable = v,
            Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
            Attribute::NeverExtractable(v) => p.never_extractable = v,
            _ => {}
        }
    }
    for t in secret {
        let info = s.get_attribute_info(handle, &[*t]);
        let sized = matches!(info.as_deref(), Ok([AttributeInfo::Available(_)]));
        let got = match s.get_attributes(handle, &[*t]) {
            Ok(mut v) => {
                let any = v
                    .iter()
                    .any(|a| matches!(a, Attribute::Value(_) | Attribute::PrivateExponent(_)));
                for a in &mut v {
                    if let Attribute::Value(b) | Attribute::PrivateExponent(b) = a {
                        b.zeroize();
                    }
                }
                any
            }
            Err(_) => false,
        };
        p.value_readable |= sized || got;
    }
    Ok(p)
}
