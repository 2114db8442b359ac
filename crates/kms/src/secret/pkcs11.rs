//! Secret keys in a PKCS#11 token.
//!
//! # Objects
//!
//! | attribute | AES-128 / AES-256 | HMAC-SHA256 |
//! |---|---|---|
//! | `CKA_LABEL` | `cw-sk:<label>` | `cw-sk:<label>` |
//! | `CKA_KEY_TYPE` | `CKK_AES` | `CKK_GENERIC_SECRET` |
//! | `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` | true | true |
//! | `CKA_EXTRACTABLE` | true: [`SecretKeyStore::wrap_for_card`] is a `C_WrapKey` | false: the key never leaves the token |
//! | `CKA_SIGN` | true (`CKM_AES_CMAC`) | true (`CKM_SHA256_HMAC`) |
//! | `CKA_ENCRYPT` | true only until the key check value is computed (`CKM_AES_ECB`), then false | false |
//! | `CKA_DECRYPT`, `CKA_VERIFY`, `CKA_WRAP`, `CKA_UNWRAP`, `CKA_DERIVE` | false | false |
//! | `CKA_ALLOWED_MECHANISMS` | `CKM_AES_CMAC`, `CKM_AES_ECB` | `CKM_SHA256_HMAC` |
//! | `CKA_ID` | `"cwsk1"` ‖ kind (1: AES-128, 2: AES-256, 3: HMAC-SHA256) ‖ KCV (3) | the same |
//!
//! Generation is `C_GenerateKey` (`CKM_AES_KEY_GEN`, `CKM_GENERIC_SECRET_KEY_GEN`) in the
//! token; import is `C_CreateObject` with the value (the template is zeroized afterwards)
//! and the token's KCV must equal the one computed from the value. `CKA_WRAP_WITH_TRUSTED`
//! is not set: the wrapping key is the card channel's DEK, a session object the host
//! creates for the call, which a token would not hold as trusted.
//!
//! # wrap_for_card: in the token, or the host fallback
//!
//! In the token when the token says it can ([`Pkcs11KeyStore::card_wrap_in_token`]:
//! `C_GetMechanismInfo` reports `CKF_WRAP` for `CKM_AES_CBC` with an AES DEK, for
//! `CKM_DES3_ECB` with a 3DES DEK): the DEK becomes a session object that can only wrap
//! (`CKA_TOKEN` false, sensitive, not extractable), `C_WrapKey(CKM_AES_CBC, IV = 00…00)` or
//! `C_WrapKey(CKM_DES3_ECB)` encrypts the key object under it, and the object is destroyed.
//! The key's value does not reach the host; the DEK was in the host anyway (the secure
//! channel runs there).
//!
//! **SoftHSM2 2.6 reports `CKF_WRAP` for `CKM_AES_CBC` but not for `CKM_DES3_ECB`** (the
//! tests check both, and that the token's bytes are the independent cipher's). The
//! fallback, taken only when the token does not say it wraps with the mechanism (so with
//! SoftHSM2 only for SCP02's 3DES session DEK): a random AES-256 transfer key becomes a
//! session object that can only wrap, `C_WrapKey(CKM_AES_KEY_WRAP)` wraps the key under
//! it, and the host unwraps (RFC 3394), checks the KCV and encrypts under the DEK with
//! [`scp::encrypt_sensitive_data`]. The key's value is then in the host's memory for the
//! duration of the call, in [`zeroize::Zeroizing`] buffers wiped on return, as is the
//! transfer key; nothing is written anywhere. An HSM that wraps with `CKM_DES3_ECB` keeps
//! it inside for SCP02 too.

use super::{
    check_value, kcv_of, validate_object_label, wrong_kind, SecretKeyInfo, SecretKeyKind,
    SecretKeyStore,
};
use crate::pkcs11::{
    key_type, labelled_token_objects, read_protection, Pkcs11KeyStore, SecretTemplate, TempObject,
};
use crate::{Error, KeyProtection};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use scp::{Key, KeyKind};
use zeroize::Zeroizing;

/// The PKCS#11 label prefix of secret keys.
pub const PKCS11_SECRET_KEY_LABEL_PREFIX: &str = "cw-sk:";
const ID_MAGIC: &[u8] = b"cwsk1";
const WHAT: &str = "secret key";

fn object_label(label: &str) -> String {
    format!("{PKCS11_SECRET_KEY_LABEL_PREFIX}{label}")
}

fn encode_id(kind: SecretKeyKind, kcv: [u8; 3]) -> Vec<u8> {
    let mut id = ID_MAGIC.to_vec();
    id.push(kind.code());
    id.extend_from_slice(&kcv);
    id
}

fn decode_id(id: &[u8]) -> Option<(SecretKeyKind, [u8; 3])> {
    match id.strip_prefix(ID_MAGIC)? {
        [code, a, b, c] => Some((SecretKeyKind::from_code(*code)?, [*a, *b, *c])),
        _ => None,
    }
}

/// A secret key object found in the token.
struct Found {
    handle: ObjectHandle,
    kind: SecretKeyKind,
    kcv: [u8; 3],
}

impl Pkcs11KeyStore {
    /// The template of a secret key object of `kind` (without value or length).
    fn secret_template(label: &str, kind: SecretKeyKind) -> Vec<Attribute> {
        let aes = kind.is_aes();
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(if aes {
                KeyType::AES
            } else {
                KeyType::GENERIC_SECRET
            }),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(aes),
            Attribute::Modifiable(true),
            Attribute::Label(object_label(label).into_bytes()),
            Attribute::Sign(true),
            Attribute::Verify(false),
            Attribute::Encrypt(aes),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::AllowedMechanisms(if aes {
                vec![MechanismType::AES_CMAC, MechanismType::AES_ECB]
            } else {
                vec![MechanismType::SHA256_HMAC]
            }),
        ]
    }

    fn find_secret(&self, s: &Session, label: &str) -> Result<Option<Found>, Error> {
        validate_object_label(WHAT, label)?;
        let what = object_label(label);
        let tampered = || Error::SecretKeyTampered {
            place: format!("token {}", self.token_label()),
            label: label.into(),
        };
        let handle = match self
            .find_labelled(s, ObjectClass::SECRET_KEY, &what)?
            .as_slice()
        {
            [] => return Ok(None),
            [h] => *h,
            _ => return Err(tampered()),
        };
        let attrs = s
            .get_attributes(handle, &[AttributeType::Id])
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", &what, e))?;
        let (kind, kcv) = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) => decode_id(&id),
                _ => None,
            })
            .ok_or_else(tampered)?;
        Ok(Some(Found { handle, kind, kcv }))
    }

    fn the_secret(&self, s: &Session, label: &str) -> Result<Found, Error> {
        self.find_secret(s, label)?
            .ok_or_else(|| Error::SecretKeyNotFound(label.into()))
    }

    /// The key check value computed in the token (see [`super`]'s table).
    fn token_secret_kcv(
        &self,
        s: &Session,
        h: ObjectHandle,
        kind: SecretKeyKind,
        what: &str,
    ) -> Result<[u8; 3], Error> {
        let out = if kind.is_aes() {
            s.encrypt(&Mechanism::AesEcb, h, &[1u8; 16])
                .map_err(|e| Error::pkcs11("C_Encrypt", format!("KCV of {what}"), e))?
        } else {
            s.sign(&Mechanism::Sha256Hmac, h, &[1u8; 16])
                .map_err(|e| Error::pkcs11("C_Sign", format!("KCV of {what}"), e))?
        };
        out.get(..3)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Config(format!("token returned {} bytes for a KCV", out.len())))
    }

    /// After a key object was made: its KCV (checked against `expect` if given) into
    /// `CKA_ID`, and `CKA_ENCRYPT` off. Destroys the object on any failure.
    fn finish_secret(
        &self,
        s: &Session,
        h: ObjectHandle,
        label: &str,
        kind: SecretKeyKind,
        expect: Option<[u8; 3]>,
    ) -> Result<SecretKeyInfo, Error> {
        let what = object_label(label);
        let finish = || -> Result<[u8; 3], Error> {
            let kcv = self.token_secret_kcv(s, h, kind, &what)?;
            if expect.is_some_and(|e| e != kcv) {
                return Err(Error::SecretKeyTampered {
                    place: format!("token {}", self.token_label()),
                    label: label.into(),
                });
            }
            s.update_attributes(
                h,
                &[
                    Attribute::Id(encode_id(kind, kcv)),
                    Attribute::Encrypt(false),
                ],
            )
            .map_err(|e| Error::pkcs11("C_SetAttributeValue", &what, e))?;
            Ok(kcv)
        };
        match finish() {
            Ok(kcv) => Ok(SecretKeyInfo {
                label: label.into(),
                kind,
                kcv,
            }),
            Err(e) => {
                let _ = s.destroy_object(h);
                Err(e)
            }
        }
    }

    /// Whether [`SecretKeyStore::wrap_for_card`] with a DEK of `dek` runs in this token
    /// (`CKF_WRAP` for `CKM_AES_CBC` or `CKM_DES3_ECB`), or in the host (see the module
    /// documentation).
    pub fn card_wrap_in_token(&self, dek: KeyKind) -> Result<bool, Error> {
        let mech = match dek {
            KeyKind::Aes => MechanismType::AES_CBC,
            KeyKind::Des3 => MechanismType::DES3_ECB,
        };
        if self.need(mech, "").is_err() {
            return Ok(false);
        }
        let info = self
            .ctx
            .get_mechanism_info(self.slot, mech)
            .map_err(|e| Error::pkcs11("C_GetMechanismInfo", mech.to_string(), e))?;
        Ok(info.wrap())
    }

    /// How the secret key `label` is protected, as the token reports it, and whether
    /// reading its `CKA_VALUE` works (it must not).
    pub fn secret_key_protection(&self, label: &str) -> Result<KeyProtection, Error> {
        let s = self.session()?;
        let found = self.the_secret(&s, label)?;
        read_protection(
            &s,
            found.handle,
            &object_label(label),
            &[AttributeType::Value],
        )
    }

    /// A session object holding the DEK that can only wrap with `mech`.
    fn dek_object<'s>(
        &self,
        s: &'s Session,
        dek: &Key,
        mech: MechanismType,
    ) -> Result<TempObject<'s>, Error> {
        let t = SecretTemplate(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type(dek.kind(), dek.len())),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::AllowedMechanisms(vec![mech]),
            Attribute::Label(b"cw-card-dek".to_vec()),
            Attribute::Value(dek.expose().to_vec()),
        ]);
        let handle = s
            .create_object(&t.0)
            .map_err(|e| Error::pkcs11("C_CreateObject", "card channel DEK", e))?;
        Ok(TempObject { session: s, handle })
    }

    /// The key's value in host memory through a one-time transfer key (the fallback).
    fn extract_secret(
        &self,
        s: &Session,
        label: &str,
        found: &Found,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.need(MechanismType::AES_KEY_WRAP, "CKM_AES_KEY_WRAP")?;
        let mut transfer = Zeroizing::new([0u8; 32]);
        crate::error::random(transfer.as_mut())?;
        let t = self.session_aes_key(s, transfer.as_ref(), true, "cw-sk-transfer")?;
        let wrapped = s
            .wrap_key(&Mechanism::AesKeyWrap, t.handle, found.handle)
            .map_err(|e| Error::pkcs11("C_WrapKey", object_label(label), e))?;
        drop(t);
        let tampered = || Error::SecretKeyTampered {
            place: format!("token {}", self.token_label()),
            label: label.into(),
        };
        let value = crate::keyset::kw_unwrap(transfer.as_ref(), &wrapped).ok_or_else(tampered)?;
        if value.len() != found.kind.key_len() || kcv_of(found.kind, &value)? != found.kcv {
            return Err(tampered());
        }
        Ok(value)
    }
}

impl SecretKeyStore for Pkcs11KeyStore {
    fn generate(&self, label: &str, kind: SecretKeyKind) -> Result<SecretKeyInfo, Error> {
        validate_object_label(WHAT, label)?;
        let (mech, name) = if kind.is_aes() {
            (Mechanism::AesKeyGen, "CKM_AES_KEY_GEN")
        } else {
            (Mechanism::GenericSecretKeyGen, "CKM_GENERIC_SECRET_KEY_GEN")
        };
        self.need(mech.mechanism_type(), name)?;
        let _admin = self.lock();
        let s = self.session()?;
        if self.find_secret(&s, label)?.is_some() {
            return Err(Error::SecretKeyExists(label.into()));
        }
        let mut t = Self::secret_template(label, kind);
        t.push(Attribute::ValueLen((kind.key_len() as u64).into()));
        let h = s
            .generate_key(&mech, &t)
            .map_err(|e| Error::pkcs11("C_GenerateKey", object_label(label), e))?;
        self.finish_secret(&s, h, label, kind, None)
    }

    fn import(
        &self,
        label: &str,
        kind: SecretKeyKind,
        value: &[u8],
    ) -> Result<SecretKeyInfo, Error> {
        validate_object_label(WHAT, label)?;
        check_value(kind, value)?;
        let expect = kcv_of(kind, value)?;
        let _admin = self.lock();
        let s = self.session()?;
        if self.find_secret(&s, label)?.is_some() {
            return Err(Error::SecretKeyExists(label.into()));
        }
        let mut t = SecretTemplate(Self::secret_template(label, kind));
        t.0.push(Attribute::Value(value.to_vec()));
        let h = s
            .create_object(&t.0)
            .map_err(|e| Error::pkcs11("C_CreateObject", object_label(label), e))?;
        drop(t);
        self.finish_secret(&s, h, label, kind, Some(expect))
    }

    fn info(&self, label: &str) -> Result<Option<SecretKeyInfo>, Error> {
        let s = self.session()?;
        Ok(self.find_secret(&s, label)?.map(|f| SecretKeyInfo {
            label: label.into(),
            kind: f.kind,
            kcv: f.kcv,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<SecretKeyInfo>, Error> {
        let _admin = self.lock();
        let s = self.session()?;
        let mut out = Vec::new();
        for (_, l) in labelled_token_objects(&s, ObjectClass::SECRET_KEY, "secret keys")? {
            let Some(label) = l.strip_prefix(PKCS11_SECRET_KEY_LABEL_PREFIX) else {
                continue;
            };
            if !label.starts_with(prefix) || validate_object_label(WHAT, label).is_err() {
                continue;
            }
            if let Some(f) = self.find_secret(&s, label)? {
                out.push(SecretKeyInfo {
                    label: label.into(),
                    kind: f.kind,
                    kcv: f.kcv,
                });
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn delete(&self, label: &str) -> Result<bool, Error> {
        validate_object_label(WHAT, label)?;
        let _admin = self.lock();
        let s = self.session()?;
        let handles = self.find_labelled(&s, ObjectClass::SECRET_KEY, &object_label(label))?;
        for h in &handles {
            s.destroy_object(*h)
                .map_err(|e| Error::pkcs11("C_DestroyObject", object_label(label), e))?;
        }
        Ok(!handles.is_empty())
    }

    fn cmac(&self, label: &str, data: &[u8]) -> Result<[u8; 16], Error> {
        self.need(MechanismType::AES_CMAC, "CKM_AES_CMAC")?;
        let s = self.session()?;
        let f = self.the_secret(&s, label)?;
        if !f.kind.is_aes() {
            return Err(wrong_kind(label, f.kind, "AES-CMAC"));
        }
        let tag = s
            .sign(&Mechanism::AesCMac, f.handle, data)
            .map_err(|e| Error::pkcs11("C_Sign(CKM_AES_CMAC)", object_label(label), e))?;
        tag.as_slice()
            .try_into()
            .map_err(|_| Error::Config(format!("token returned a {}-byte AES-CMAC", tag.len())))
    }

    fn hmac_sha256(&self, label: &str, data: &[u8]) -> Result<[u8; 32], Error> {
        self.need(MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC")?;
        let s = self.session()?;
        let f = self.the_secret(&s, label)?;
        if f.kind != SecretKeyKind::HmacSha256 {
            return Err(wrong_kind(label, f.kind, "HMAC-SHA256"));
        }
        let tag = s
            .sign(&Mechanism::Sha256Hmac, f.handle, data)
            .map_err(|e| Error::pkcs11("C_Sign(CKM_SHA256_HMAC)", object_label(label), e))?;
        tag.as_slice()
            .try_into()
            .map_err(|_| Error::Config(format!("token returned a {}-byte HMAC-SHA256", tag.len())))
    }

    fn wrap_for_card(&self, label: &str, dek: &Key) -> Result<Vec<u8>, Error> {
        let s = self.session()?;
        let f = self.the_secret(&s, label)?;
        if !f.kind.is_aes() {
            return Err(wrong_kind(label, f.kind, "wrapping for a card"));
        }
        if !self.card_wrap_in_token(dek.kind())? {
            let value = self.extract_secret(&s, label, &f)?;
            return Ok(scp::encrypt_sensitive_data(dek, &value)?);
        }
        let (mech, mech_type) = match dek.kind() {
            KeyKind::Aes => (Mechanism::AesCbc([0; 16]), MechanismType::AES_CBC),
            KeyKind::Des3 => (Mechanism::Des3Ecb, MechanismType::DES3_ECB),
        };
        let dek_obj = self.dek_object(&s, dek, mech_type)?;
        let wrapped = s
            .wrap_key(&mech, dek_obj.handle, f.handle)
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::KeyUnextractable, _) => Error::SecretKeyUse {
                    label: label.into(),
                    detail: "the token refuses to wrap it (CKA_EXTRACTABLE is false)".into(),
                },
                e => Error::pkcs11("C_WrapKey", object_label(label), e),
            })?;
        drop(dek_obj);
        if wrapped.len() != f.kind.key_len() {
            return Err(Error::Config(format!(
                "token wrapped a {}-byte key into {} bytes (no padding expected)",
                f.kind.key_len(),
                wrapped.len()
            )));
        }
        Ok(wrapped)
    }
}
