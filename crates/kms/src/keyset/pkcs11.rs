//! Key sets in a PKCS#11 token.
//!
//! # Objects
//!
//! Each key of a set is a token secret-key object:
//!
//! | attribute | value |
//! |---|---|
//! | `CKA_LABEL` | `cw-ks:<label>:enc`, `…:mac`, `…:dek` |
//! | `CKA_KEY_TYPE` | `CKK_AES`, `CKK_DES2` (16 bytes) or `CKK_DES3` (24) |
//! | `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` | true: `CKA_VALUE` is never readable |
//! | `CKA_EXTRACTABLE` | true: the set must leave the token wrapped, for the card (below) and for the AP |
//! | `CKA_ENCRYPT` with `CKA_ALLOWED_MECHANISMS` = `CKM_AES_ECB` / `CKM_DES3_ECB` | true: only to compute the key check value in the token |
//! | `CKA_DECRYPT`, `CKA_SIGN`, `CKA_VERIFY`, `CKA_WRAP`, `CKA_UNWRAP`, `CKA_DERIVE` | false |
//! | `CKA_ID` | `"cwks1"` ‖ KCV (3) ‖ key length (1) ‖ created (Unix seconds, 8, big-endian) |
//!
//! Generation is `C_GenerateKey` in the token. A set whose three objects are not all there
//! (a crash between two `C_GenerateKey`/`C_UnwrapKey` calls; every failure path destroys
//! what it created) is reported as [`Error::KeySetTampered`] and removed by
//! [`KeySetStore::delete_key_set`].
//!
//! # Import (the AP): the initial keys are never in the process in the clear
//!
//! For each key `u` of the set:
//!
//! 1. `KEK_u`: `C_DeriveKey(CKM_ECDH1_DERIVE, kdf = CKD_SHA256_KDF, shared data =
//!    SharedInfo_u, public data = Q_e)` with the private transport key (`cw-ecka:<label>`,
//!    `CKA_DERIVE` only), into a session `CKK_AES` key of 32 bytes that can only unwrap.
//! 2. `C_UnwrapKey(CKM_AES_KEY_WRAP, KEK_u, wrapped, template above)`: the key becomes a
//!    token object without passing through the host; the token checks the RFC 3394
//!    integrity value (failure: [`Error::KeySetUnwrap`]).
//! 3. The token computes the key's KCV (`C_Encrypt`, ECB), compared with the document's
//!    ([`Error::KeySetKcv`]); on any failure every object made so far is destroyed.
//!
//! **SoftHSM2 (2.6) accepts only `CKD_NULL` for `CKM_ECDH1_DERIVE`**: `CKD_SHA256_KDF`
//! fails with `CKR_MECHANISM_PARAM_INVALID` (checked by the tests, see
//! [`Pkcs11KeyStore::transport_kdf_in_token`]). The fallback, taken only on that refusal:
//! `C_DeriveKey(CKM_ECDH1_DERIVE, CKD_NULL)` into a session generic secret whose value
//! (`Z`, 32 bytes) is read and the object destroyed at once (the same as the SCP11 OCE key
//! agreement, [`crate::AgreementKey::agree`]), the X9.63 KDF in the host, and the KEK put
//! back as a session object (`C_CreateObject`, sensitive, unwrap only). So on SoftHSM2
//! `Z` and the three KEKs are in the host's memory for the duration of the call (in
//! [`zeroize::Zeroizing`] buffers, wiped on return); the initial keys still are not.
//! An HSM that implements `CKD_SHA256_KDF` keeps `Z` and the KEKs inside too.
//!
//! # Wrap (the CI)
//!
//! A session EC key pair `(d_e, Q_e)` is generated in the token
//! (`C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN)`, `CKA_TOKEN` false, private half sensitive,
//! not extractable, derive only); `KEK_u` is derived from `d_e` and the recipient's `Q_r`
//! as above (with the same fallback), and `C_WrapKey(CKM_AES_KEY_WRAP, KEK_u, key_u)`
//! wraps each key inside the token. The ephemeral pair and the KEKs are destroyed before
//! the call returns.
//!
//! # Which key material leaves the HSM, when, for how long, how it is wiped
//!
//! * [`KeySetStore::key_set`] (the CI's PUT KEY of the initial keys; the AP's one opening
//!   of the SSD with them): the secure-channel code computes session keys in software, so
//!   the three keys come out. The host draws a random AES-256 transfer key, creates it as a
//!   session object that can only wrap, `C_WrapKey`s the three keys under it, destroys the
//!   object, and unwraps in the process (RFC 3394). The keys then live in
//!   [`scp::Key`] values ([`zeroize::Zeroizing`] buffers) for as long as the caller holds
//!   the returned [`StaticKeys`] (one secure-channel session; the session keys derived
//!   from them likewise), and are wiped when dropped; the transfer key is wiped on return.
//!   Only the PKCS#11 user can do this (as with any extractable key; an HSM with
//!   `CKA_WRAP_WITH_TRUSTED` support can restrict it further).
//! * [`KeySetStore::wrap_key_set_for`]: only wrapped under `KEK_u` (plus, on SoftHSM2,
//!   `Z` and the KEKs as above).
//! * Nothing else: listing reads labels and `CKA_ID`, KCVs are computed in the token.
//!
//! Deleting a set is `C_DestroyObject` of its three objects.
//!
//! Every key set operation holds the token's in-process lock (as base key changes do):
//! SoftHSM2 fails `C_GenerateKeyPair` and shows half-written objects when another session
//! of the process works on the token at the same time.

use super::{
    check_for_recipient, check_kcv, shared_info_for, shared_info_prefix, validate_key_set_label,
    x963_kdf_sha256, KeySetInfo, KeySetStore, KeyUsage, TransportPublicKey, WrappedKeySet, KEK_LEN,
};
use crate::agreement::{ecka_label, AgreementKeyStore, EckaCurve};
use crate::pkcs11::{key_type, labelled_token_objects, Pkcs11KeyStore, SecretTemplate, TempObject};
use crate::types::{check_len, from_unix, now_secs, unix};
use crate::Error;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use scp::{Key, KeyKind, StaticKeys};
use std::collections::BTreeMap;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// The PKCS#11 label prefix of key set keys.
pub const PKCS11_KEY_SET_LABEL_PREFIX: &str = "cw-ks:";
const ID_MAGIC: &[u8] = b"cwks1";

fn object_label(label: &str, usage: KeyUsage) -> String {
    format!("{PKCS11_KEY_SET_LABEL_PREFIX}{label}:{}", usage.suffix())
}

fn parse_object_label(l: &str) -> Option<(String, KeyUsage)> {
    let (label, usage) = l
        .strip_prefix(PKCS11_KEY_SET_LABEL_PREFIX)?
        .rsplit_once(':')?;
    let usage = KeyUsage::ALL.into_iter().find(|u| u.suffix() == usage)?;
    validate_key_set_label(label).ok()?;
    Some((label.to_string(), usage))
}

fn encode_id(kcv: [u8; 3], len: usize, created: SystemTime) -> Vec<u8> {
    let mut id = ID_MAGIC.to_vec();
    id.extend_from_slice(&kcv);
    id.push(u8::try_from(len).unwrap_or(0));
    id.extend_from_slice(&unix(created).to_be_bytes());
    id
}

fn decode_id(id: &[u8]) -> Option<([u8; 3], usize, SystemTime)> {
    let rest = id.strip_prefix(ID_MAGIC)?;
    if rest.len() != 12 {
        return None;
    }
    let kcv = rest[..3].try_into().ok()?;
    let created = i64::from_be_bytes(rest[4..12].try_into().ok()?);
    Some((kcv, usize::from(rest[3]), from_unix(created)))
}

/// The template of a session AES key that can wrap (`wrap`) or unwrap only, never leaves
/// the token and is gone with the session: the transfer key and the KEKs. The caller adds
/// `CKA_VALUE` or `CKA_VALUE_LEN`.
fn session_aes_template(wrap: bool, label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(wrap),
        Attribute::Unwrap(!wrap),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Where the X9.63 KDF of the transport scheme runs on this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KdfPlace {
    /// `CKD_SHA256_KDF` with `CKM_ECDH1_DERIVE`.
    Token,
    /// `CKD_NULL`, the KDF in the host (the token refused `CKD_SHA256_KDF`).
    Host,
}

/// A key set being made.
#[derive(Clone, Copy)]
struct NewSet<'a> {
    label: &'a str,
    kind: KeyKind,
    len: usize,
    created: SystemTime,
}

/// One key of a set in the token.
struct TokenKey {
    handle: ObjectHandle,
    kind: KeyKind,
    len: usize,
    kcv: [u8; 3],
    created: SystemTime,
}

/// Objects made during a generate or import, destroyed on drop unless kept.
struct NewObjects<'a> {
    session: &'a Session,
    handles: Vec<ObjectHandle>,
}

impl Drop for NewObjects<'_> {
    fn drop(&mut self) {
        for h in self.handles.drain(..) {
            let _ = self.session.destroy_object(h);
        }
    }
}

impl NewObjects<'_> {
    fn keep(mut self) {
        self.handles.clear();
    }
}

impl Pkcs11KeyStore {
    /// Where the X9.63 KDF of key set transport runs on this token: `Some(true)` in the token
    /// (`CKD_SHA256_KDF`), `Some(false)` in the host (the token refused `CKD_SHA256_KDF`, as
    /// SoftHSM2 does; see the `keyset` module), `None` before the first wrap or import.
    pub fn transport_kdf_in_token(&self) -> Option<bool> {
        self.transport_kdf.get().map(|p| *p == KdfPlace::Token)
    }

    /// How each key (ENC, MAC, DEK) of a set is protected, as the token reports it, and
    /// whether reading its `CKA_VALUE` works (it must not).
    pub fn key_set_protection(&self, label: &str) -> Result<Vec<crate::KeyProtection>, Error> {
        validate_key_set_label(label)?;
        let s = self.session()?;
        let keys = self.find_set(&s, label)?;
        KeyUsage::ALL
            .iter()
            .zip(keys)
            .map(|(u, k)| {
                crate::pkcs11::read_protection(
                    &s,
                    k.handle,
                    &object_label(label, *u),
                    &[AttributeType::Value],
                )
            })
            .collect()
    }

    /// The template of a key set object (without `CKA_ID`).
    fn key_set_template(label: &str, usage: KeyUsage, kind: KeyKind, len: usize) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type(kind, len)),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Modifiable(true),
            Attribute::Label(object_label(label, usage).into_bytes()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::AllowedMechanisms(vec![match kind {
                KeyKind::Aes => MechanismType::AES_ECB,
                KeyKind::Des3 => MechanismType::DES3_ECB,
            }]),
        ]
    }

    /// Handles of every object labelled as a key of `label` (any usage).
    fn set_objects(&self, s: &Session, label: &str) -> Result<Vec<ObjectHandle>, Error> {
        let mut out = Vec::new();
        for u in KeyUsage::ALL {
            out.extend(self.find_labelled(s, ObjectClass::SECRET_KEY, &object_label(label, u))?);
        }
        Ok(out)
    }

    /// Kind, length, KCV and creation time of a key set object.
    fn describe_key(&self, s: &Session, h: ObjectHandle, what: &str) -> Result<TokenKey, Error> {
        let tampered = || Error::KeySetTampered {
            place: format!("token {}", self.token_label()),
            label: what.into(),
        };
        let attrs = s
            .get_attributes(h, &[AttributeType::KeyType, AttributeType::Id])
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", what, e))?;
        let (mut kt, mut meta) = (None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kt = Some(t),
                Attribute::Id(id) => meta = decode_id(&id),
                _ => {}
            }
        }
        let (kcv, len, created) = meta.ok_or_else(tampered)?;
        let kind = match kt {
            Some(t) if t == KeyType::AES => KeyKind::Aes,
            Some(t) if t == KeyType::DES2 || t == KeyType::DES3 => KeyKind::Des3,
            _ => return Err(tampered()),
        };
        check_len(kind, len).map_err(|_| tampered())?;
        if key_type(kind, len) != kt.unwrap_or(KeyType::AES) {
            return Err(tampered());
        }
        Ok(TokenKey {
            handle: h,
            kind,
            len,
            kcv,
            created,
        })
    }

    /// The three keys of `label` (ENC, MAC, DEK); [`Error::KeySetNotFound`] if there is
    /// none, [`Error::KeySetTampered`] if incomplete or inconsistent.
    fn find_set(&self, s: &Session, label: &str) -> Result<Vec<TokenKey>, Error> {
        self.find_set_opt(s, label)?
            .ok_or_else(|| Error::KeySetNotFound(label.into()))
    }

    fn find_set_opt(&self, s: &Session, label: &str) -> Result<Option<Vec<TokenKey>>, Error> {
        let tampered = || Error::KeySetTampered {
            place: format!("token {}", self.token_label()),
            label: label.into(),
        };
        let mut keys = Vec::with_capacity(3);
        let mut missing = 0;
        for u in KeyUsage::ALL {
            let what = object_label(label, u);
            match self
                .find_labelled(s, ObjectClass::SECRET_KEY, &what)?
                .as_slice()
            {
                [] => missing += 1,
                [h] => keys.push(self.describe_key(s, *h, &what)?),
                _ => return Err(tampered()),
            }
        }
        match missing {
            0 => {}
            3 => return Ok(None),
            _ => return Err(tampered()),
        }
        let (kind, len) = (keys[0].kind, keys[0].len);
        if keys.iter().any(|k| k.kind != kind || k.len != len) {
            return Err(tampered());
        }
        Ok(Some(keys))
    }

    fn info_of(label: &str, keys: &[TokenKey]) -> Option<KeySetInfo> {
        let enc = keys.first()?;
        Some(KeySetInfo {
            label: label.into(),
            kind: enc.kind,
            len: enc.len,
            kcv: enc.kcv,
            created: enc.created,
        })
    }

    /// After a key object was made (generated or unwrapped): its KCV, computed in the token,
    /// checked against `expect` if given, then recorded with length and creation time in
    /// `CKA_ID`.
    fn finish_key(
        &self,
        s: &Session,
        h: ObjectHandle,
        new: &NewSet<'_>,
        usage: KeyUsage,
        expect: Option<[u8; 3]>,
    ) -> Result<[u8; 3], Error> {
        let NewSet {
            label,
            kind,
            len,
            created,
        } = *new;
        let what = object_label(label, usage);
        let kcv = self.token_kcv(s, h, kind, &what)?;
        if let Some(given) = expect {
            check_kcv(label, usage, given, kcv)?;
        }
        s.update_attributes(h, &[Attribute::Id(encode_id(kcv, len, created))])
            .map_err(|e| Error::pkcs11("C_SetAttributeValue", format!("CKA_ID of {what}"), e))?;
        Ok(kcv)
    }

    /// A session AES key object holding `value` (the transfer key or a KEK computed in the
    /// host), able to wrap or to unwrap only.
    pub(crate) fn session_aes_key<'s>(
        &self,
        s: &'s Session,
        value: &[u8],
        wrap: bool,
        what: &str,
    ) -> Result<TempObject<'s>, Error> {
        let mut t = SecretTemplate(session_aes_template(wrap, what));
        t.0.push(Attribute::Value(value.to_vec()));
        let handle = s
            .create_object(&t.0)
            .map_err(|e| Error::pkcs11("C_CreateObject", what, e))?;
        Ok(TempObject { session: s, handle })
    }

    /// `KEK_u` for each usage as session objects (wrap or unwrap only), from the private EC
    /// key `private` and the peer's uncompressed point: in the token with `CKD_SHA256_KDF`,
    /// or, if the token refuses that KDF, `Z` out with `CKD_NULL` and the KDF in the host.
    fn derive_keks<'s>(
        &self,
        s: &'s Session,
        private: ObjectHandle,
        peer: &[u8],
        prefix: &[u8],
        wrap: bool,
        what: &str,
    ) -> Result<Vec<TempObject<'s>>, Error> {
        self.need(MechanismType::ECDH1_DERIVE, "CKM_ECDH1_DERIVE")?;
        self.need(MechanismType::AES_KEY_WRAP, "CKM_AES_KEY_WRAP")?;
        let mut kek_template = session_aes_template(wrap, "cw-ks-kek");
        kek_template.push(Attribute::ValueLen((KEK_LEN as u64).into()));
        let mut keks = Vec::with_capacity(3);
        if self.transport_kdf.get() != Some(&KdfPlace::Host) {
            for u in KeyUsage::ALL {
                let info = shared_info_for(prefix, u);
                let params = Ecdh1DeriveParams::new(EcKdf::sha256(&info), peer);
                match s.derive_key(&Mechanism::Ecdh1Derive(params), private, &kek_template) {
                    Ok(handle) => {
                        let _ = self.transport_kdf.set(KdfPlace::Token);
                        keks.push(TempObject { session: s, handle });
                    }
                    Err(CkError::Pkcs11(RvError::MechanismParamInvalid, _))
                        if keks.is_empty() && self.transport_kdf.get().is_none() =>
                    {
                        let _ = self.transport_kdf.set(KdfPlace::Host);
                        break;
                    }
                    Err(e) => {
                        return Err(Error::pkcs11(
                            "C_DeriveKey(CKM_ECDH1_DERIVE, CKD_SHA256_KDF)",
                            what,
                            e,
                        ))
                    }
                }
            }
            if keks.len() == 3 {
                return Ok(keks);
            }
        }
        // The token does not do the X9.63 KDF: Z out (as `AgreementKey::agree`), KDF here.
        let params = Ecdh1DeriveParams::new(EcKdf::null(), peer);
        let z_template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let h = s
            .derive_key(&Mechanism::Ecdh1Derive(params), private, &z_template)
            .map_err(|e| Error::pkcs11("C_DeriveKey(CKM_ECDH1_DERIVE, CKD_NULL)", what, e))?;
        let value = s.get_attributes(h, &[AttributeType::Value]);
        let destroyed = s.destroy_object(h);
        let z = value
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", what, e))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(Zeroizing::new(v)),
                _ => None,
            })
            .filter(|z| z.len() == 32)
            .ok_or_else(|| Error::KeyAgreement {
                label: what.into(),
                detail: "the token's ECDH gave no 32-byte secret".into(),
            })?;
        destroyed.map_err(|e| Error::pkcs11("C_DestroyObject", what, e))?;
        for u in KeyUsage::ALL {
            let kek = x963_kdf_sha256(&z, &shared_info_for(prefix, u), KEK_LEN);
            keks.push(self.session_aes_key(s, &kek, wrap, "cw-ks-kek")?);
        }
        Ok(keks)
    }

    /// The key set's keys in host memory, through a one-time transfer key (see the module
    /// documentation).
    fn extract(&self, s: &Session, label: &str, keys: &[TokenKey]) -> Result<StaticKeys, Error> {
        self.need(MechanismType::AES_KEY_WRAP, "CKM_AES_KEY_WRAP")?;
        let mut transfer = Zeroizing::new([0u8; 32]);
        crate::error::random(transfer.as_mut())?;
        let t = self.session_aes_key(s, transfer.as_ref(), true, "cw-ks-transfer")?;
        let mut out = Vec::with_capacity(3);
        for (u, k) in KeyUsage::ALL.iter().zip(keys) {
            let what = object_label(label, *u);
            let wrapped = s
                .wrap_key(&Mechanism::AesKeyWrap, t.handle, k.handle)
                .map_err(|e| Error::pkcs11("C_WrapKey", &what, e))?;
            let plain = super::kw_unwrap(transfer.as_ref(), &wrapped).ok_or_else(|| {
                Error::KeySetTampered {
                    place: format!("token {}", self.token_label()),
                    label: label.into(),
                }
            })?;
            let key = Key::new(k.kind, &plain)?;
            if key.len() != k.len || key.kcv() != k.kcv {
                return Err(Error::KeySetTampered {
                    place: format!("token {}", self.token_label()),
                    label: label.into(),
                });
            }
            out.push(key);
        }
        drop(t);
        let mut it = out.into_iter();
        match (it.next(), it.next(), it.next()) {
            (Some(enc), Some(mac), Some(dek)) => Ok(StaticKeys { enc, mac, dek }),
            _ => Err(Error::KeySetNotFound(label.into())),
        }
    }

    /// A session EC key pair on P-256 that can only derive: (private handle, public point).
    fn ephemeral_pair<'s>(
        &self,
        s: &'s Session,
        what: &str,
    ) -> Result<(TempObject<'s>, TempObject<'s>, Vec<u8>), Error> {
        self.need(MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN")?;
        let public = [
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Derive(false),
            Attribute::Verify(false),
            Attribute::EcParams(EckaCurve::P256.params().to_vec()),
        ];
        let private = [
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(true),
            Attribute::Sign(false),
        ];
        let (pub_h, priv_h) = s
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| Error::pkcs11("C_GenerateKeyPair", what, e))?;
        let pub_obj = TempObject {
            session: s,
            handle: pub_h,
        };
        let priv_obj = TempObject {
            session: s,
            handle: priv_h,
        };
        let (curve, _, point) = self.read_ecka_public(s, pub_h, what)?;
        if curve != EckaCurve::P256 {
            return Err(Error::KeyAgreement {
                label: what.into(),
                detail: format!("token made a {curve} key, asked for p256"),
            });
        }
        Ok((priv_obj, pub_obj, point))
    }
}

impl KeySetStore for Pkcs11KeyStore {
    fn generate_key_set(
        &self,
        label: &str,
        kind: KeyKind,
        len: usize,
    ) -> Result<KeySetInfo, Error> {
        validate_key_set_label(label)?;
        check_len(kind, len)?;
        let _admin = self.lock();
        let s = self.session()?;
        if !self.set_objects(&s, label)?.is_empty() {
            return Err(Error::KeySetExists(label.into()));
        }
        let created = now_secs();
        let mut made = NewObjects {
            session: &s,
            handles: Vec::with_capacity(3),
        };
        let mut enc_kcv = [0; 3];
        for u in KeyUsage::ALL {
            let mut t = Self::key_set_template(label, u, kind, len);
            let mech = match (kind, len) {
                (KeyKind::Des3, 16) => Mechanism::Des2KeyGen,
                (KeyKind::Des3, _) => Mechanism::Des3KeyGen,
                (KeyKind::Aes, _) => {
                    t.push(Attribute::ValueLen((len as u64).into()));
                    Mechanism::AesKeyGen
                }
            };
            let h = s
                .generate_key(&mech, &t)
                .map_err(|e| Error::pkcs11("C_GenerateKey", object_label(label, u), e))?;
            made.handles.push(h);
            let new = NewSet {
                label,
                kind,
                len,
                created,
            };
            let kcv = self.finish_key(&s, h, &new, u, None)?;
            if u == KeyUsage::Enc {
                enc_kcv = kcv;
            }
        }
        made.keep();
        Ok(KeySetInfo {
            label: label.into(),
            kind,
            len,
            kcv: enc_kcv,
            created,
        })
    }

    fn key_set(&self, label: &str) -> Result<StaticKeys, Error> {
        validate_key_set_label(label)?;
        let _admin = self.lock();
        let s = self.session()?;
        let keys = self.find_set(&s, label)?;
        self.extract(&s, label, &keys)
    }

    fn key_set_info(&self, label: &str) -> Result<Option<KeySetInfo>, Error> {
        validate_key_set_label(label)?;
        let _admin = self.lock();
        let s = self.session()?;
        Ok(self
            .find_set_opt(&s, label)?
            .and_then(|keys| Self::info_of(label, &keys)))
    }

    fn list_key_sets(&self) -> Result<Vec<KeySetInfo>, Error> {
        let _admin = self.lock();
        let s = self.session()?;
        let mut labels = BTreeMap::new();
        for (_, l) in labelled_token_objects(&s, ObjectClass::SECRET_KEY, "secret keys")? {
            if let Some((label, _)) = parse_object_label(&l) {
                labels.insert(label, ());
            }
        }
        let mut out = Vec::with_capacity(labels.len());
        for label in labels.into_keys() {
            let keys = self.find_set(&s, &label)?;
            out.extend(Self::info_of(&label, &keys));
        }
        Ok(out)
    }

    fn delete_key_set(&self, label: &str) -> Result<bool, Error> {
        validate_key_set_label(label)?;
        let _admin = self.lock();
        let s = self.session()?;
        let handles = self.set_objects(&s, label)?;
        for h in &handles {
            s.destroy_object(*h)
                .map_err(|e| Error::pkcs11("C_DestroyObject", label, e))?;
        }
        Ok(!handles.is_empty())
    }

    fn wrap_key_set_for(
        &self,
        label: &str,
        recipient: &TransportPublicKey,
    ) -> Result<WrappedKeySet, Error> {
        validate_key_set_label(label)?;
        let _admin = self.lock();
        let s = self.session()?;
        let keys = self.find_set(&s, label)?;
        let (kind, len) = (keys[0].kind, keys[0].len);
        let what = format!("ephemeral key to wrap {label}");
        let (private, public, q_e) = self.ephemeral_pair(&s, &what)?;
        let q_r = recipient.to_sec1();
        let prefix = shared_info_prefix(label, kind, len, &q_e, &q_r);
        let keks = self.derive_keks(&s, private.handle, &q_r, &prefix, true, &what)?;
        drop(private);
        drop(public);
        let mut wrapped = Vec::with_capacity(3);
        for ((u, k), kek) in KeyUsage::ALL.into_iter().zip(&keys).zip(&keks) {
            let w = s
                .wrap_key(&Mechanism::AesKeyWrap, kek.handle, k.handle)
                .map_err(|e| Error::pkcs11("C_WrapKey", object_label(label, u), e))?;
            let kcv = self.token_kcv(&s, k.handle, k.kind, &object_label(label, u))?;
            wrapped.push((u, kcv, w));
        }
        drop(keks);
        Ok(super::assemble(
            label, kind, len, &q_e, &q_r, &prefix, wrapped,
        ))
    }

    fn import_wrapped_key_set(
        &self,
        label: &str,
        wrapped: &WrappedKeySet,
        transport_key: &str,
    ) -> Result<KeySetInfo, Error> {
        validate_key_set_label(label)?;
        crate::validate_signing_label(transport_key)?;
        let _admin = self.lock();
        let s = self.session()?;
        if !self.set_objects(&s, label)?.is_empty() {
            return Err(Error::KeySetExists(label.into()));
        }
        let what = ecka_label(transport_key);
        let (private, public) = self.find_pair(&s, &what, || {
            Error::AgreementKeyNotFound(transport_key.into())
        })?;
        let (curve, _, point) = self.read_ecka_public(&s, public, transport_key)?;
        if curve != EckaCurve::P256 {
            return Err(Error::KeyAgreement {
                label: transport_key.into(),
                detail: format!("a transport key must be on P-256, this one is on {curve}"),
            });
        }
        let c = check_for_recipient(wrapped, transport_key, &point)?;
        let keks = self.derive_keks(&s, private, &c.ephemeral, &c.shared_info, false, &what)?;
        let created = now_secs();
        let mut made = NewObjects {
            session: &s,
            handles: Vec::with_capacity(3),
        };
        for ((u, kcv, w), kek) in c.keys.iter().zip(&keks) {
            // No CKA_VALUE_LEN: the length comes from the wrapped key (SoftHSM2 refuses it
            // in an unwrap template); checked by the KCV.
            let t = Self::key_set_template(label, *u, c.kind, c.len);
            let h = s
                .unwrap_key(&Mechanism::AesKeyWrap, kek.handle, w, &t)
                .map_err(|e| match e {
                    // SoftHSM2 reports a failed RFC 3394 integrity check as
                    // CKR_GENERAL_ERROR (SoftHSM.cpp, UnwrapKeySym); the document passed
                    // every structural check, so that is what a failure here means.
                    CkError::Pkcs11(
                        RvError::WrappedKeyInvalid
                        | RvError::EncryptedDataInvalid
                        | RvError::WrappedKeyLenRange
                        | RvError::GeneralError,
                        _,
                    ) => Error::KeySetUnwrap {
                        label: c.label.clone(),
                        usage: u.name(),
                    },
                    e => Error::pkcs11("C_UnwrapKey", object_label(label, *u), e),
                })?;
            made.handles.push(h);
            let new = NewSet {
                label,
                kind: c.kind,
                len: c.len,
                created,
            };
            self.finish_key(&s, h, &new, *u, Some(*kcv))?;
        }
        drop(keks);
        made.keep();
        Ok(KeySetInfo {
            label: label.into(),
            kind: c.kind,
            len: c.len,
            kcv: c.keys[0].1,
            created,
        })
    }

    fn create_transport_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        let spki = self.create_agreement_key(label, EckaCurve::P256)?;
        TransportPublicKey::from_spki_der(&spki)
    }

    fn transport_public_key(&self, label: &str) -> Result<TransportPublicKey, Error> {
        super::transport_public_of(self, label)
    }
}
