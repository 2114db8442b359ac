//! Elliptic-curve **key-agreement keys** (ECKA, BSI TR-03111 §4.3.1 / NIST SP 800-56A
//! §5.7.1.2 "ECC CDH" with cofactor 1) in the key store: the static key pair of an off-card
//! entity (`SK.OCE.ECKA` of GP Amendment F) whose private half never leaves the store.
//!
//! The key store only computes the shared secret `Z` (the x-coordinate of `d · Q`); the
//! SCP11 key derivation (X9.63 KDF with the shared info of Amendment F §6.5.2.3) runs on the
//! host over `ShSee ‖ ShSes`. A separate, object-safe trait [`AgreementKeyStore`], as
//! [`crate::SigningKeyStore`] is for signing keys: both backends implement it.
//!
//! Curves ([`EckaCurve`]): NIST P-256 and P-384. Public keys come out as DER
//! `SubjectPublicKeyInfo` (RFC 5480 §2) and as the uncompressed SEC 1 point (`04 ‖ X ‖ Y`,
//! SEC 1 v2 §2.3.3) that Amendment F carries in tag `5F49`/`B0`.
//!
//! # Software keystore
//!
//! The private key is a PKCS#8 `PrivateKeyInfo` sealed with AES-256-GCM under the master key
//! in the `agreement_keys` list of the keystore file, exactly like signing keys, with its own
//! AAD prefix (a sealed signing key cannot be passed off as a key-agreement key):
//!
//! ```json
//! "agreement_keys": [ { "label": "oce", "algorithm": "p256", "public": "<SPKI DER hex>",
//!                       "created": "…", "sealed": "<nonce(12) ‖ GCM ciphertext ‖ tag(16)>" } ]
//! ```
//!
//! # PKCS#11
//!
//! `C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN)` on `secp256r1`/`secp384r1` makes a token key pair
//! labelled `cw-ecka:<label>`; the private key is `CKA_TOKEN`, `CKA_PRIVATE`,
//! `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, and may only derive (`CKA_DERIVE`, no
//! `CKA_SIGN`). The agreement is `C_DeriveKey(CKM_ECDH1_DERIVE, kdf = CKD_NULL, the peer's
//! uncompressed point)` into a session-only, extractable `CKO_SECRET_KEY`
//! (`CKK_GENERIC_SECRET`, `CKA_VALUE_LEN` = the coordinate length) whose `CKA_VALUE` is
//! read back and which is destroyed at once (PKCS#11 v2.40 Current Mechanisms §2.3.15): the
//! shared secret leaves the token, the private key never does.

use crate::config::StoreConfig;
use crate::keyblob::{BlobKind, SealedKey};
use crate::pkcs11::{KeyProtection, Pkcs11KeyStore};
use crate::software::{SoftwareKeyStore, State};
use crate::Error;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// The PKCS#11 label prefix of key-agreement key pairs.
pub const PKCS11_ECKA_LABEL_PREFIX: &str = "cw-ecka:";
const AAD_LABEL: &[u8] = b"cardwright-kms-software/1 agreement-key\0";
/// DER of the `secp256r1` OID 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// DER of the `secp384r1` OID 1.3.132.0.34 (RFC 5480 §2.1.1.1).
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];

/// The curve of a key-agreement key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EckaCurve {
    /// NIST P-256 (`secp256r1`).
    P256,
    /// NIST P-384 (`secp384r1`).
    P384,
}

impl EckaCurve {
    /// The name used in files and on the command line: `p256`, `p384`.
    pub fn name(self) -> &'static str {
        match self {
            EckaCurve::P256 => "p256",
            EckaCurve::P384 => "p384",
        }
    }

    /// Length in bytes of a field element (and of the shared secret `Z`).
    pub fn coordinate_len(self) -> usize {
        match self {
            EckaCurve::P256 => 32,
            EckaCurve::P384 => 48,
        }
    }

    /// Length of an uncompressed SEC 1 point (`04 ‖ X ‖ Y`).
    pub fn point_len(self) -> usize {
        1 + 2 * self.coordinate_len()
    }

    pub(crate) fn params(self) -> &'static [u8] {
        match self {
            EckaCurve::P256 => P256_PARAMS,
            EckaCurve::P384 => P384_PARAMS,
        }
    }
}

impl fmt::Display for EckaCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EckaCurve {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "secp256r1" | "prime256v1" => Ok(EckaCurve::P256),
            "p384" | "p-384" | "secp384r1" => Ok(EckaCurve::P384),
            _ => Err(Error::Config(format!("curve {s:?}: want p256 or p384"))),
        }
    }
}

/// A private key-agreement key held by a key store. `Debug` shows the label and curve only.
pub trait AgreementKey: Send + Sync + fmt::Debug {
    /// The label it was created under.
    fn label(&self) -> &str;

    /// Its curve.
    fn curve(&self) -> EckaCurve;

    /// The public key as DER `SubjectPublicKeyInfo`.
    fn public_key_spki(&self) -> &[u8];

    /// The public key as an uncompressed SEC 1 point `04 ‖ X ‖ Y`.
    fn public_point(&self) -> &[u8];

    /// ECKA-DH (BSI TR-03111 §4.3.1): the x-coordinate of `d · Q` for the peer's public
    /// point `Q` (uncompressed or compressed SEC 1), [`EckaCurve::coordinate_len`] bytes.
    /// A point not on the curve is refused ([`Error::KeyAgreement`]).
    fn agree(&self, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// A store of key-agreement keys (see the module documentation). Object safe.
pub trait AgreementKeyStore: Send + Sync + fmt::Debug {
    /// Generates a key pair under `label` (see [`crate::validate_signing_label`]: the same
    /// rules) and returns its public key (DER `SubjectPublicKeyInfo`).
    /// [`Error::AgreementKeyExists`] if the label is taken.
    fn create_agreement_key(&self, label: &str, curve: EckaCurve) -> Result<Vec<u8>, Error>;

    /// The key under `label`; [`Error::AgreementKeyNotFound`] if there is none. The key
    /// stays usable after the store is dropped.
    fn agreement_key(&self, label: &str) -> Result<Box<dyn AgreementKey>, Error>;

    /// The labels of every key-agreement key, sorted.
    fn agreement_key_labels(&self) -> Result<Vec<String>, Error>;
}

impl StoreConfig {
    /// Opens the configured store as a key-agreement key store (a software keystore that does
    /// not exist yet is created).
    pub fn open_agreement(&self) -> Result<Box<dyn AgreementKeyStore>, Error> {
        self.open_as(None, |s| Box::new(s) as _, |p| Box::new(p) as _)
    }
}

/// Parses a configuration string (see [`StoreConfig`]) and opens it as a key-agreement key
/// store.
pub fn open_agreement(config: &str) -> Result<Box<dyn AgreementKeyStore>, Error> {
    config.parse::<StoreConfig>()?.open_agreement()
}

/// The SPKI and uncompressed point of a SEC 1 public point on `curve` (validated).
pub fn ecka_public_from_point(
    curve: EckaCurve,
    point: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    match curve {
        EckaCurve::P256 => {
            let k = p256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| "not a point on P-256".to_string())?;
            let spki = k.to_public_key_der().map_err(|e| e.to_string())?;
            Ok((
                spki.as_bytes().to_vec(),
                k.to_sec1_point(false).as_bytes().to_vec(),
            ))
        }
        EckaCurve::P384 => {
            let k = p384::PublicKey::from_sec1_bytes(point)
                .map_err(|_| "not a point on P-384".to_string())?;
            let spki = k.to_public_key_der().map_err(|e| e.to_string())?;
            Ok((
                spki.as_bytes().to_vec(),
                k.to_sec1_point(false).as_bytes().to_vec(),
            ))
        }
    }
}

/// A key-store key as the SCP11 host's OCE key ([`scp::scp11::OceKeyAgreement`]): the
/// static ECKA of SCP11a/c runs in the store. A store failure becomes
/// [`scp::Error::Unsupported`] naming the key store and its cause.
impl scp::scp11::OceKeyAgreement for Box<dyn AgreementKey> {
    fn curve(&self) -> scp::scp11::Curve {
        match AgreementKey::curve(self.as_ref()) {
            EckaCurve::P256 => scp::scp11::Curve::P256,
            EckaCurve::P384 => scp::scp11::Curve::P384,
        }
    }

    fn agree(&self, peer: &scp::scp11::PublicKey) -> Result<Zeroizing<Vec<u8>>, scp::Error> {
        AgreementKey::agree(self.as_ref(), peer.to_sec1())
            .map_err(|e| scp::Error::Unsupported(format!("the OCE key in the key store: {e}")))
    }
}

// ---------------------------------------------------------------------------------------
// Software

/// Key-agreement keys in the keystore file, sealed as [`crate::keyblob`] describes.
pub(crate) enum AgreementBlob {}

impl BlobKind for AgreementBlob {
    const AAD_LABEL: &'static [u8] = AAD_LABEL;
    fn check_algorithm(name: &str) -> Result<(), Error> {
        name.parse::<EckaCurve>().map(drop)
    }
    fn tampered(path: &Path, label: &str) -> Error {
        Error::AgreementKeyTampered {
            path: path.to_path_buf(),
            label: label.into(),
        }
    }
    fn exists(label: &str) -> Error {
        Error::AgreementKeyExists(label.into())
    }
    fn not_found(label: &str) -> Error {
        Error::AgreementKeyNotFound(label.into())
    }
    fn entries(state: &State) -> &Vec<StoredAgreementKey> {
        &state.agreement
    }
    fn entries_mut(state: &mut State) -> &mut Vec<StoredAgreementKey> {
        &mut state.agreement
    }
}

/// One sealed key-agreement key as stored in the keystore file.
pub(crate) type StoredAgreementKey = SealedKey<AgreementBlob>;

enum SoftSecret {
    P256(p256::SecretKey),
    P384(p384::SecretKey),
}

/// A key-agreement key in memory: label and public key, and the private half `S` held by
/// a backend.
struct EckaKey<S> {
    label: String,
    curve: EckaCurve,
    spki: Vec<u8>,
    point: Vec<u8>,
    secret: S,
}

/// The private half of a key-agreement key, as a backend holds it.
trait EckaSecret: Send + Sync + Sized {
    /// The type name `Debug` shows.
    const NAME: &'static str;
    /// Ends the `Debug` output after label and curve (never showing the key).
    fn finish_debug(d: &mut fmt::DebugStruct<'_, '_>) -> fmt::Result;
    /// [`AgreementKey::agree`].
    fn agree(key: &EckaKey<Self>, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}

impl<S: EckaSecret> fmt::Debug for EckaKey<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        S::finish_debug(
            f.debug_struct(S::NAME)
                .field("label", &self.label)
                .field("curve", &self.curve),
        )
    }
}

impl<S: EckaSecret> AgreementKey for EckaKey<S> {
    fn label(&self) -> &str {
        &self.label
    }
    fn curve(&self) -> EckaCurve {
        self.curve
    }
    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }
    fn public_point(&self) -> &[u8] {
        &self.point
    }
    fn agree(&self, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        S::agree(self, peer_point)
    }
}

/// A software key-agreement key in memory (the secret key types wipe themselves on drop).
type SoftwareAgreementKey = EckaKey<SoftSecret>;

impl SoftwareAgreementKey {
    fn failed(label: &str, detail: impl fmt::Display) -> Error {
        Error::KeyAgreement {
            label: label.into(),
            detail: detail.to_string(),
        }
    }

    fn generate(label: &str, curve: EckaCurve) -> Result<Self, Error> {
        let key = match curve {
            EckaCurve::P256 => SoftSecret::P256(
                p256::SecretKey::try_generate().map_err(|e| Error::Random(e.to_string()))?,
            ),
            EckaCurve::P384 => SoftSecret::P384(
                p384::SecretKey::try_generate().map_err(|e| Error::Random(e.to_string()))?,
            ),
        };
        Self::new(label, curve, key)
    }

    fn new(label: &str, curve: EckaCurve, key: SoftSecret) -> Result<Self, Error> {
        let point = match &key {
            SoftSecret::P256(k) => k.public_key().to_sec1_point(false).as_bytes().to_vec(),
            SoftSecret::P384(k) => k.public_key().to_sec1_point(false).as_bytes().to_vec(),
        };
        let (spki, point) =
            ecka_public_from_point(curve, &point).map_err(|e| Self::failed(label, e))?;
        Ok(SoftwareAgreementKey {
            label: label.into(),
            curve,
            spki,
            point,
            secret: key,
        })
    }

    fn from_pkcs8(label: &str, curve: EckaCurve, der: &[u8]) -> Result<Self, Error> {
        let key = match curve {
            EckaCurve::P256 => SoftSecret::P256(
                p256::SecretKey::from_pkcs8_der(der).map_err(|e| Self::failed(label, e))?,
            ),
            EckaCurve::P384 => SoftSecret::P384(
                p384::SecretKey::from_pkcs8_der(der).map_err(|e| Self::failed(label, e))?,
            ),
        };
        Self::new(label, curve, key)
    }

    fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = match &self.secret {
            SoftSecret::P256(k) => k.to_pkcs8_der(),
            SoftSecret::P384(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| Self::failed(&self.label, e))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

impl EckaSecret for SoftSecret {
    const NAME: &'static str = "SoftwareAgreementKey";
    fn finish_debug(d: &mut fmt::DebugStruct<'_, '_>) -> fmt::Result {
        d.field("key", &"<redacted>").finish()
    }
    fn agree(key: &SoftwareAgreementKey, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bad = |_| {
            SoftwareAgreementKey::failed(
                &key.label,
                format!("the peer's key is not a point on {}", key.curve),
            )
        };
        let z = match &key.secret {
            SoftSecret::P256(k) => {
                let peer = p256::PublicKey::from_sec1_bytes(peer_point).map_err(bad)?;
                let s = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Zeroizing::new(s.raw_secret_bytes().to_vec())
            }
            SoftSecret::P384(k) => {
                let peer = p384::PublicKey::from_sec1_bytes(peer_point).map_err(bad)?;
                let s = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Zeroizing::new(s.raw_secret_bytes().to_vec())
            }
        };
        Ok(z)
    }
}

impl SoftwareKeyStore {
    /// Imports a key-agreement private key given as PKCS#8 DER (an OCE key made elsewhere,
    /// e.g. with `openssl`) under `label`; returns its public key (SPKI DER).
    pub fn import_agreement_key(
        &self,
        label: &str,
        curve: EckaCurve,
        pkcs8: &[u8],
    ) -> Result<Vec<u8>, Error> {
        crate::validate_signing_label(label)?;
        let key = SoftwareAgreementKey::from_pkcs8(label, curve, pkcs8)?;
        self.store_agreement(key)
    }

    fn store_agreement(&self, key: SoftwareAgreementKey) -> Result<Vec<u8>, Error> {
        let pkcs8 = key.to_pkcs8()?;
        self.store_sealed::<AgreementBlob>(&key.label, key.curve.name(), &key.spki, &pkcs8)
    }
}

impl AgreementKeyStore for SoftwareKeyStore {
    fn create_agreement_key(&self, label: &str, curve: EckaCurve) -> Result<Vec<u8>, Error> {
        crate::validate_signing_label(label)?;
        let key = SoftwareAgreementKey::generate(label, curve)?;
        self.store_agreement(key)
    }

    fn agreement_key(&self, label: &str) -> Result<Box<dyn AgreementKey>, Error> {
        crate::validate_signing_label(label)?;
        let (stored, pkcs8) = self.unseal::<AgreementBlob>(label)?;
        let curve = stored.algorithm.parse()?;
        let key = SoftwareAgreementKey::from_pkcs8(label, curve, &pkcs8)?;
        stored.check_public(&self.path, &key.spki)?;
        Ok(Box::new(key))
    }

    fn agreement_key_labels(&self) -> Result<Vec<String>, Error> {
        self.sealed_labels::<AgreementBlob>()
    }
}

// ---------------------------------------------------------------------------------------
// PKCS#11

/// The private key of a key pair in a token. Derives on its own session; holds the store's
/// login session so the login outlives the store.
struct TokenSecret {
    handle: ObjectHandle,
    session: Mutex<Session>,
    _login: Arc<Mutex<Session>>,
}

/// A key pair in a token.
type Pkcs11AgreementKey = EckaKey<TokenSecret>;

impl EckaSecret for TokenSecret {
    const NAME: &'static str = "Pkcs11AgreementKey";
    fn finish_debug(d: &mut fmt::DebugStruct<'_, '_>) -> fmt::Result {
        d.finish_non_exhaustive()
    }
    fn agree(key: &Pkcs11AgreementKey, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let what = ecka_label(&key.label);
        // Validate (and decompress) the peer's point before the token sees it: tokens
        // differ in what they check, and an invalid point must never reach the key.
        let (_, peer) = ecka_public_from_point(key.curve, peer_point).map_err(|detail| {
            Error::KeyAgreement {
                label: key.label.clone(),
                detail: format!("the peer's key: {detail}"),
            }
        })?;
        let s = key
            .secret
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &peer);
        let len = key.curve.coordinate_len() as u64;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(len.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let h = s
            .derive_key(
                &Mechanism::Ecdh1Derive(params),
                key.secret.handle,
                &template,
            )
            .map_err(|e| Error::pkcs11("C_DeriveKey(CKM_ECDH1_DERIVE)", &what, e))?;
        let value = s.get_attributes(h, &[AttributeType::Value]);
        let destroyed = s.destroy_object(h);
        let value = value.map_err(|e| Error::pkcs11("C_GetAttributeValue", &what, e))?;
        destroyed.map_err(|e| Error::pkcs11("C_DestroyObject", &what, e))?;
        let z = value
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(Zeroizing::new(v)),
                _ => None,
            })
            .ok_or_else(|| Error::KeyAgreement {
                label: key.label.clone(),
                detail: "the derived secret has no CKA_VALUE".into(),
            })?;
        if z.len() != key.curve.coordinate_len() {
            return Err(Error::KeyAgreement {
                label: key.label.clone(),
                detail: format!(
                    "the token derived {} bytes, want {}",
                    z.len(),
                    key.curve.coordinate_len()
                ),
            });
        }
        Ok(z)
    }
}

pub(crate) fn ecka_label(label: &str) -> String {
    format!("{PKCS11_ECKA_LABEL_PREFIX}{label}")
}

impl Pkcs11KeyStore {
    /// How the private key of a key-agreement key pair is protected, as the token reports
    /// it, and whether reading its `CKA_VALUE` works (it must not).
    pub fn agreement_key_protection(&self, label: &str) -> Result<KeyProtection, Error> {
        crate::validate_signing_label(label)?;
        let s = self.session()?;
        let h = self.the_private_key(&s, &ecka_label(label), || {
            Error::AgreementKeyNotFound(label.into())
        })?;
        crate::pkcs11::read_protection(&s, h, &ecka_label(label), &[AttributeType::Value])
    }

    /// The curve, SPKI and uncompressed point of an EC public-key object.
    pub(crate) fn read_ecka_public(
        &self,
        s: &Session,
        h: ObjectHandle,
        label: &str,
    ) -> Result<(EckaCurve, Vec<u8>, Vec<u8>), Error> {
        let what = ecka_label(label);
        let bad = |detail: String| Error::KeyAgreement {
            label: label.into(),
            detail,
        };
        let attrs = s
            .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(|e| Error::pkcs11("C_GetAttributeValue", &what, e))?;
        let (mut params, mut point) = (None, None);
        for a in attrs {
            match a {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let params = params.ok_or_else(|| bad("no CKA_EC_PARAMS".into()))?;
        let curve = if params == P256_PARAMS {
            EckaCurve::P256
        } else if params == P384_PARAMS {
            EckaCurve::P384
        } else {
            return Err(bad("EC key on neither P-256 nor P-384".into()));
        };
        let point = point.ok_or_else(|| bad("no CKA_EC_POINT".into()))?;
        // CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40 §2.3.3); some tokens give the
        // bare point.
        let n = curve.point_len();
        let bare = match point.as_slice() {
            [0x04, l, rest @ ..] if usize::from(*l) == n && rest.len() == n => rest,
            [0x04, 0x81, l, rest @ ..] if usize::from(*l) == n && rest.len() == n => rest,
            p if p.len() == n => p,
            p => return Err(bad(format!("CKA_EC_POINT of {} bytes", p.len()))),
        };
        let (spki, point) = ecka_public_from_point(curve, bare).map_err(bad)?;
        Ok((curve, spki, point))
    }
}

impl AgreementKeyStore for Pkcs11KeyStore {
    fn create_agreement_key(&self, label: &str, curve: EckaCurve) -> Result<Vec<u8>, Error> {
        crate::validate_signing_label(label)?;
        let _admin = self.lock();
        let s = self.session()?;
        if self.pair_exists(&s, &ecka_label(label))? {
            return Err(Error::AgreementKeyExists(label.into()));
        }
        self.need(MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN")?;
        self.need(MechanismType::ECDH1_DERIVE, "CKM_ECDH1_DERIVE")?;
        let what = ecka_label(label);
        let id = Sha256::digest(what.as_bytes())[..16].to_vec();
        let public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(false),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::Label(what.clone().into_bytes()),
            Attribute::Id(id.clone()),
            Attribute::EcParams(curve.params().to_vec()),
        ];
        // Only key agreement, never leaving the token (PKCS#11 v2.40 §4.9).
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(true),
            Attribute::Sign(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Label(what.clone().into_bytes()),
            Attribute::Id(id),
        ];
        let (pub_h, priv_h) = s
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| Error::pkcs11("C_GenerateKeyPair", &what, e))?;
        match self.read_ecka_public(&s, pub_h, label) {
            Ok((got, spki, _)) if got == curve => Ok(spki),
            other => {
                let _ = s.destroy_object(priv_h);
                let _ = s.destroy_object(pub_h);
                Err(match other {
                    Err(e) => e,
                    Ok((got, _, _)) => Error::KeyAgreement {
                        label: label.into(),
                        detail: format!("token made a {got} key, asked for {curve}"),
                    },
                })
            }
        }
    }

    fn agreement_key(&self, label: &str) -> Result<Box<dyn AgreementKey>, Error> {
        crate::validate_signing_label(label)?;
        let what = ecka_label(label);
        let s = self.session()?;
        let (handle, pub_h) =
            self.find_pair(&s, &what, || Error::AgreementKeyNotFound(label.into()))?;
        let (curve, spki, point) = self.read_ecka_public(&s, pub_h, label)?;
        self.need(MechanismType::ECDH1_DERIVE, "CKM_ECDH1_DERIVE")?;
        let session = self.key_session(&what)?;
        Ok(Box::new(Pkcs11AgreementKey {
            label: label.into(),
            curve,
            spki,
            point,
            secret: TokenSecret {
                handle,
                session: Mutex::new(session),
                _login: Arc::clone(&self.login),
            },
        }))
    }

    fn agreement_key_labels(&self) -> Result<Vec<String>, Error> {
        self.private_key_labels(PKCS11_ECKA_LABEL_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_names_round_trip() {
        for c in [EckaCurve::P256, EckaCurve::P384] {
            assert_eq!(c.name().parse::<EckaCurve>().unwrap(), c);
        }
        assert!("p521".parse::<EckaCurve>().is_err());
    }

    /// NIST CAVS ECC CDH Primitive (SP 800-56A) known answers, P-256 and P-384, COUNT = 0,
    /// through the PKCS#8 path the keystore uses.
    #[test]
    fn software_ecdh_matches_nist_cavs_known_answers() {
        let text = include_str!("../tests/vectors/ecc_cdh.txt");
        let mut n = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let curve: EckaCurve = f[0].parse().unwrap();
            let peer = apdu::parse_hex(&format!("04{}{}", f[1], f[2])).unwrap();
            let d = apdu::parse_hex(f[3]).unwrap();
            let pkcs8 = match curve {
                EckaCurve::P256 => p256::SecretKey::from_slice(&d).unwrap().to_pkcs8_der(),
                EckaCurve::P384 => p384::SecretKey::from_slice(&d).unwrap().to_pkcs8_der(),
            }
            .unwrap();
            let key = SoftwareAgreementKey::from_pkcs8("kat", curve, pkcs8.as_bytes()).unwrap();
            let want_pub = apdu::parse_hex(&format!("04{}{}", f[4], f[5])).unwrap();
            assert_eq!(key.public_point(), want_pub.as_slice());
            let z = key.agree(&peer).unwrap();
            assert_eq!(apdu::hex(&z), f[6].to_ascii_uppercase(), "{line}");
            assert!(!format!("{key:?}").contains(&f[3][..8]));
            let mut off = peer.clone();
            off[5] ^= 1;
            assert!(matches!(key.agree(&off), Err(Error::KeyAgreement { .. })));
            assert!(key.agree(&[]).is_err());
            n += 1;
        }
        assert_eq!(n, 2);
    }
}
