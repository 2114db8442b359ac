//! SCP11 (GP Card Specification v2.3 Amendment F, v1.3/v1.4): the asymmetric handshake of
//! SCP11a, SCP11b and SCP11c, host and card, ending in SCP03 secure messaging.
//!
//! ```text
//! host (OCE)                                          card (SD)
//! [11a/11c: PERFORM SECURITY OPERATION, OCE certificate chain — see gp::cert, gp::scp11]
//! HostAuth::new ─ MUTUAL AUTHENTICATE 80 82 (11a/11c) ──▶ card_authenticate
//!                 INTERNAL AUTHENTICATE 80 88 (11b)
//!                 A6{90 02 11 i, 95 01 usage, 80 01 88, 81 01 len} 5F49 ePK.OCE
//!              ◀─ 5F49 ePK.SD 86 receipt ──────────────── (response data, CardSession)
//! HostAuth::finish (checks the receipt) → HostSession
//! ```
//!
//! Key agreement (Amendment F §3.1.1, §3.1.2; as read by OpenSCP-Java and yubikit, whose
//! transcripts these functions reproduce byte for byte, see `tests/scp11_kat.rs`):
//!
//! | variant | i    | SD KID | ShSee                          | ShSs?                          |
//! |---------|------|--------|--------------------------------|--------------------------------|
//! | 11a     | `01` | `11`   | eSK.OCE × ePK.SD               | SK.OCE × PK.SD                 |
//! | 11b     | `00` | `13`   | eSK.OCE × ePK.SD               | eSK.OCE × PK.SD                |
//! | 11c     | `03` | `15`   | eSK.OCE × PK.SD (no ephemeral SD key: the card sends PK.SD as ePK.SD) | SK.OCE × PK.SD |
//!
//! The key material `ShSee ‖ ShSs?` goes through the ANSI X9.63 KDF with SHA-256 and shared
//! info = key usage ‖ key type (`88`) ‖ key length; its output is cut into five keys of the
//! session key length, in order: receipt key, S-ENC, S-MAC, S-RMAC, S-DEK. The receipt is
//! AES-CMAC(receipt key, MA/IA data ‖ `5F49` ePK.SD TLV), all 16 bytes, and is the initial
//! MAC chaining value of the SCP03 secure messaging that follows (S-DEK, not a static key,
//! encrypts PUT KEY data).
//!
//! Choices:
//! * The security level comes from the key usage byte (`95`), read as GP key usage bits
//!   (GP 2.3.1 Table 11-17): `10` secure messaging in commands, `20` in responses, `04` MAC,
//!   `08` encryption. `3C` (what OpenSCP and yubikit send) is level `33`; `34` is `11`,
//!   `1C` is `03`, `14` is `01`.
//! * S8/S16 is not signalled in the protocol (the MA data are the same); both ends are told.
//! * Session key lengths 16, 24 and 32 bytes (OpenSCP has an AES-192 transcript).
//! * Sessions report [`crate::Protocol::Scp03`] with i = `60` (+ `01` in S16 mode) for their
//!   secure messaging; [`crate::HostSession::scp11`] / [`crate::CardSession::scp11`] say
//!   which SCP11 variant opened them.
//! * Speed (`cargo bench -p scp --bench scp11`, P-256, AES-128, medians on a shared 2-core
//!   machine, so noisy): host handshake 0.64 ms (11a) / 0.77 ms (11b) plus 0.21 ms for the
//!   ephemeral key, about 1,100–1,200 per second; card 1.07 ms (11a) / 0.92 ms (11b), about
//!   950–1,080 per second. A level-33 round trip of a 239-byte command after the handshake
//!   costs the same as after SCP03 (7.8 µs vs 7.9 µs): it is the same code.
//! * Curves: NIST P-256 and P-384 (key parameter references `00` and `01`). brainpoolP256r1
//!   is not supported (no maintained RustCrypto crate in the workspace).

use crate::channel::{random, Channel, Inner};
use crate::error::malformed;
use crate::scp03::Scp03;
use crate::{crypto, CardSession, Error, HostSession, Key, SecurityLevel};
use apdu::tlv::{self, Tag};
use core::fmt;
use core::str::FromStr;
use p256::elliptic_curve::sec1::ToSec1Point;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// INS of MUTUAL AUTHENTICATE (SCP11a, SCP11c).
pub const INS_MUTUAL_AUTHENTICATE: u8 = 0x82;
/// INS of INTERNAL AUTHENTICATE (SCP11b).
pub const INS_INTERNAL_AUTHENTICATE: u8 = 0x88;
/// The key usage the reference hosts send: C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION.
pub const KEY_USAGE_FULL: u8 = 0x3C;
/// Key type of the session keys in the control reference template: AES.
pub const KEY_TYPE_AES: u8 = 0x88;

const TAG_CRT: Tag = Tag::new(0xA6);
const TAG_SCP_ID: Tag = Tag::new(0x90);
const TAG_KEY_USAGE: Tag = Tag::new(0x95);
const TAG_KEY_TYPE: Tag = Tag::new(0x80);
const TAG_KEY_LEN: Tag = Tag::new(0x81);
const TAG_EPK: Tag = Tag::new(0x5F49);
const TAG_RECEIPT: Tag = Tag::new(0x86);

/// The three SCP11 variants (Amendment F §2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Variant {
    /// SCP11a: mutual authentication with the OCE's static key and certificate.
    A,
    /// SCP11b: card authentication only (the host stays anonymous).
    B,
    /// SCP11c: like 11a, without an ephemeral SD key, so scripts can be pre-computed.
    C,
}

impl Variant {
    /// The "i" parameter sent after `11` in tag `90`: `01` (11a), `00` (11b), `03` (11c).
    pub fn i(self) -> u8 {
        match self {
            Variant::A => 0x01,
            Variant::B => 0x00,
            Variant::C => 0x03,
        }
    }

    /// The variant of an i parameter.
    pub fn from_i(i: u8) -> Option<Self> {
        match i {
            0x01 => Some(Variant::A),
            0x00 => Some(Variant::B),
            0x03 => Some(Variant::C),
            _ => None,
        }
    }

    /// The usual key identifier of the SD key pair: `11` (11a), `13` (11b), `15` (11c).
    pub fn default_kid(self) -> u8 {
        match self {
            Variant::A => 0x11,
            Variant::B => 0x13,
            Variant::C => 0x15,
        }
    }

    /// The variant whose usual SD KID this is.
    pub fn from_kid(kid: u8) -> Option<Self> {
        match kid {
            0x11 => Some(Variant::A),
            0x13 => Some(Variant::B),
            0x15 => Some(Variant::C),
            _ => None,
        }
    }

    /// The INS of the authentication command: `82` (MUTUAL) or `88` (INTERNAL, 11b).
    pub fn ins(self) -> u8 {
        match self {
            Variant::B => INS_INTERNAL_AUTHENTICATE,
            _ => INS_MUTUAL_AUTHENTICATE,
        }
    }

    /// Whether the OCE authenticates with a static key and a certificate (11a, 11c).
    pub fn authenticates_oce(self) -> bool {
        self != Variant::B
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::A => "11a",
            Variant::B => "11b",
            Variant::C => "11c",
        })
    }
}

impl FromStr for Variant {
    type Err = Error;
    /// `11a`/`11b`/`11c`, also `scp11a`, `a` … (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_prefix("scp").unwrap_or(&t);
        let t = t.strip_prefix("11").unwrap_or(t);
        match t {
            "a" => Ok(Variant::A),
            "b" => Ok(Variant::B),
            "c" => Ok(Variant::C),
            _ => Err(Error::Parse {
                what: "SCP11 variant",
                input: s.to_string(),
            }),
        }
    }
}

/// An elliptic curve SCP11 can use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

impl Curve {
    /// The key parameter reference (tag `F0` in PUT KEY and in GP certificates; GP
    /// Amendment E/F): `00` P-256, `01` P-384.
    pub fn param_ref(self) -> u8 {
        match self {
            Curve::P256 => 0x00,
            Curve::P384 => 0x01,
        }
    }

    /// The curve of a key parameter reference.
    pub fn from_param_ref(r: u8) -> Option<Self> {
        match r {
            0x00 => Some(Curve::P256),
            0x01 => Some(Curve::P384),
            _ => None,
        }
    }

    /// Length of a scalar or coordinate in bytes (32, 48).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// Length of an uncompressed SEC1 point `04 X Y` (65, 97).
    pub fn point_len(self) -> usize {
        1 + 2 * self.field_len()
    }

    /// The curve of an uncompressed point of this length.
    pub fn from_point_len(len: usize) -> Option<Self> {
        match len {
            65 => Some(Curve::P256),
            97 => Some(Curve::P384),
            _ => None,
        }
    }

    /// The dotted OID of the named curve (`1.2.840.10045.3.1.7`, `1.3.132.0.34`).
    pub fn oid(self) -> &'static str {
        match self {
            Curve::P256 => "1.2.840.10045.3.1.7",
            Curve::P384 => "1.3.132.0.34",
        }
    }

    /// The curve of a dotted OID.
    pub fn from_oid(oid: &str) -> Option<Self> {
        match oid {
            "1.2.840.10045.3.1.7" => Some(Curve::P256),
            "1.3.132.0.34" => Some(Curve::P384),
            _ => None,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        })
    }
}

/// A validated elliptic-curve public key (a point on its curve, kept as uncompressed SEC1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    curve: Curve,
    point: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.curve, apdu::hex(&self.point))
    }
}

impl PublicKey {
    /// A SEC1 point (uncompressed `04…` or compressed `02…`/`03…`) on `curve`; refused
    /// if it is not on the curve or is the identity.
    pub fn from_sec1(curve: Curve, bytes: &[u8]) -> Result<Self, Error> {
        let bad = || malformed("EC public key", format!("not a {curve} point"));
        let point = match curve {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(bytes)
                .map_err(|_| bad())?
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(bytes)
                .map_err(|_| bad())?
                .to_sec1_point(false)
                .as_bytes()
                .to_vec(),
        };
        Ok(Self { curve, point })
    }

    /// An uncompressed point whose curve is told by its length (65: P-256, 97: P-384).
    pub fn from_uncompressed(bytes: &[u8]) -> Result<Self, Error> {
        let curve = Curve::from_point_len(bytes.len()).ok_or_else(|| {
            malformed(
                "EC public key",
                format!("{} bytes is no uncompressed P-256/P-384 point", bytes.len()),
            )
        })?;
        Self::from_sec1(curve, bytes)
    }

    /// A DER `SubjectPublicKeyInfo` (id-ecPublicKey with a named curve).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePublicKey;
        if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
            return Self::from_sec1(Curve::P256, k.to_sec1_point(false).as_bytes());
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
            return Self::from_sec1(Curve::P384, k.to_sec1_point(false).as_bytes());
        }
        Err(malformed(
            "SubjectPublicKeyInfo",
            "not a P-256 or P-384 public key",
        ))
    }

    /// The DER `SubjectPublicKeyInfo` (id-ecPublicKey, named curve), e.g. for a certificate.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Error> {
        use p256::pkcs8::EncodePublicKey;
        let der = match self.curve {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(&self.point)
                .map_err(|_| malformed("EC public key", "not a P-256 point"))?
                .to_public_key_der(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(&self.point)
                .map_err(|_| malformed("EC public key", "not a P-384 point"))?
                .to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| malformed("SubjectPublicKeyInfo", e.to_string()))
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The uncompressed SEC1 encoding `04 X Y`.
    pub fn to_sec1(&self) -> &[u8] {
        &self.point
    }
}

/// An elliptic-curve private key held in memory (SK.SD on the virtual card, an ephemeral
/// key, or a software OCE key). The scalar is zeroized on drop; `Debug` shows only the
/// curve and the public key.
#[derive(Clone)]
pub struct PrivateKey {
    curve: Curve,
    scalar: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, public {:?})", self.curve, self.public)
    }
}

/// The in-memory implementation of [`OceKeyAgreement`] (for tests and key files).
pub type SoftwareOceKey = PrivateKey;

impl PrivateKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(curve: Curve) -> Result<Self, Error> {
        // Rejection sampling: a random string is a valid scalar unless it is 0 or ≥ n.
        for _ in 0..64 {
            let bytes = Zeroizing::new(random(curve.field_len())?);
            if let Ok(k) = Self::from_scalar(curve, &bytes) {
                return Ok(k);
            }
        }
        Err(Error::Random("no valid scalar in 64 draws".into()))
    }

    /// A key from its big-endian scalar (exactly the field length: 32 or 48 bytes).
    pub fn from_scalar(curve: Curve, scalar: &[u8]) -> Result<Self, Error> {
        let bad = || malformed("EC private key", format!("not a {curve} scalar"));
        let public = match curve {
            Curve::P256 => {
                let k = p256::SecretKey::from_slice(scalar).map_err(|_| bad())?;
                k.public_key().to_sec1_point(false).as_bytes().to_vec()
            }
            Curve::P384 => {
                let k = p384::SecretKey::from_slice(scalar).map_err(|_| bad())?;
                k.public_key().to_sec1_point(false).as_bytes().to_vec()
            }
        };
        if scalar.len() != curve.field_len() {
            return Err(bad());
        }
        Ok(Self {
            curve,
            scalar: Zeroizing::new(scalar.to_vec()),
            public: PublicKey {
                curve,
                point: public,
            },
        })
    }

    /// A key from DER: PKCS#8 `PrivateKeyInfo` or SEC1 `ECPrivateKey` (RFC 5915), P-256 or
    /// P-384.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Self::from_scalar(Curve::P256, &k.to_bytes());
        }
        if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
            return Self::from_scalar(Curve::P384, &k.to_bytes());
        }
        if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
            return Self::from_scalar(Curve::P256, &k.to_bytes());
        }
        if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
            return Self::from_scalar(Curve::P384, &k.to_bytes());
        }
        Err(malformed(
            "EC private key",
            "not a PKCS#8 or SEC1 P-256/P-384 key",
        ))
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The big-endian scalar.
    ///
    /// **Dangerous**: the caller now holds the secret (for PUT KEY of an ECC private key, or
    /// a key store). Do not log it.
    pub fn expose_scalar(&self) -> &[u8] {
        &self.scalar
    }

    /// ECKA-DH (BSI TR-03111 §4.3.1, as Amendment F uses it): the x coordinate of
    /// `scalar × peer`.
    pub fn agree(&self, peer: &PublicKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        if peer.curve != self.curve {
            return Err(Error::Unsupported(format!(
                "key agreement between {} and {}",
                self.curve, peer.curve
            )));
        }
        let bad = || malformed("EC key agreement", "invalid key");
        Ok(match self.curve {
            Curve::P256 => {
                let k = p256::SecretKey::from_slice(&self.scalar).map_err(|_| bad())?;
                let p = p256::PublicKey::from_sec1_bytes(&peer.point).map_err(|_| bad())?;
                let s = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), p.as_affine());
                Zeroizing::new(s.raw_secret_bytes().to_vec())
            }
            Curve::P384 => {
                let k = p384::SecretKey::from_slice(&self.scalar).map_err(|_| bad())?;
                let p = p384::PublicKey::from_sec1_bytes(&peer.point).map_err(|_| bad())?;
                let s = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), p.as_affine());
                Zeroizing::new(s.raw_secret_bytes().to_vec())
            }
        })
    }
}

/// The OCE's static private key (SK.OCE.ECKA, SCP11a/c) as something that performs ECKA,
/// so the key can stay in a key store or an HSM. Object safe: pass `&dyn OceKeyAgreement`.
pub trait OceKeyAgreement {
    /// The curve of the key.
    fn curve(&self) -> Curve;
    /// ECKA-DH with the peer's public key: the shared x coordinate (field length bytes).
    fn agree(&self, peer: &PublicKey) -> Result<Zeroizing<Vec<u8>>, Error>;
}

impl OceKeyAgreement for PrivateKey {
    fn curve(&self) -> Curve {
        self.curve
    }
    fn agree(&self, peer: &PublicKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        PrivateKey::agree(self, peer)
    }
}

/// What the host asks for: variant, the SD key reference, session key length, S8/S16 and
/// key usage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Params {
    /// SCP11a, b or c.
    pub variant: Variant,
    /// Key version number of the SD key pair (P1 of MA/IA).
    pub kvn: u8,
    /// Key identifier of the SD key pair (P2 of MA/IA), usually `11`/`13`/`15`.
    pub kid: u8,
    /// Session key length: 16 (AES-128), 24 or 32 (AES-256).
    pub key_len: usize,
    /// S16 mode (16-byte MACs) instead of S8.
    pub s16: bool,
    /// Key usage qualifier (tag `95`), [`KEY_USAGE_FULL`] by default.
    pub key_usage: u8,
}

impl Params {
    /// The usual parameters: the variant's KID, AES-128, S8, key usage `3C`.
    pub fn new(variant: Variant, kvn: u8) -> Self {
        Self {
            variant,
            kvn,
            kid: variant.default_kid(),
            key_len: 16,
            s16: false,
            key_usage: KEY_USAGE_FULL,
        }
    }

    /// The security level the key usage asks for (see the module documentation).
    pub fn level(&self) -> Result<SecurityLevel, Error> {
        level_of_usage(self.key_usage)
    }

    fn check(&self) -> Result<(), Error> {
        if !matches!(self.key_len, 16 | 24 | 32) {
            return Err(Error::BadKeyLength {
                kind: "AES",
                len: self.key_len,
            });
        }
        self.level().map(|_| ())
    }

    /// The i parameter of the SCP03 secure messaging that follows: R-MAC and
    /// R-ENCRYPTION supported, b1 for S16.
    fn sm_i(&self) -> u8 {
        0x60 | u8::from(self.s16)
    }
}

/// The security level given by a key usage qualifier (see the module documentation).
pub fn level_of_usage(usage: u8) -> Result<SecurityLevel, Error> {
    let level = match usage {
        0x3C => 0x33,
        0x34 => 0x11,
        0x1C => 0x03,
        0x14 => 0x01,
        _ => {
            return Err(Error::Unsupported(format!(
                "SCP11 key usage {usage:02X} (supported: 3C, 34, 1C, 14)"
            )))
        }
    };
    Ok(SecurityLevel(level))
}

/// The data of MUTUAL/INTERNAL AUTHENTICATE (Amendment F §7.6.2.3):
/// `A6{90 02 11 i, 95 01 usage, 80 01 88, 81 01 len} 5F49 ePK.OCE`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthRequest {
    /// The variant (from the i parameter).
    pub variant: Variant,
    /// Key usage qualifier.
    pub key_usage: u8,
    /// Session key type (`88`, AES).
    pub key_type: u8,
    /// Session key length in bytes.
    pub key_len: usize,
    /// The OCE's ephemeral public key.
    pub epk_oce: PublicKey,
}

impl AuthRequest {
    /// Encodes the command data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let crt = [
            tlv::encode(TAG_SCP_ID, &[0x11, self.variant.i()]),
            tlv::encode(TAG_KEY_USAGE, &[self.key_usage]),
            tlv::encode(TAG_KEY_TYPE, &[self.key_type]),
            tlv::encode(TAG_KEY_LEN, &[self.key_len as u8]),
        ]
        .concat();
        [
            tlv::encode(TAG_CRT, &crt),
            tlv::encode(TAG_EPK, self.epk_oce.to_sec1()),
        ]
        .concat()
    }

    /// Card side: parses the command data, checking every field (SCP identifier `11`, a known
    /// i, key type `88`, key length 16/24/32, a supported key usage, a valid point of
    /// `curve` — the curve of the SD key). Unknown tags inside `A6` are refused.
    pub fn parse(data: &[u8], curve: Curve) -> Result<Self, Error> {
        let what = "SCP11 authenticate data";
        let items = tlv::parse_all_ref(data).map_err(|e| malformed(what, e.to_string()))?;
        let [crt, epk] = items.as_slice() else {
            return Err(malformed(what, "want A6 and 5F49"));
        };
        if crt.tag() != TAG_CRT || epk.tag() != TAG_EPK {
            return Err(malformed(what, "want A6 and 5F49"));
        }
        let (mut scp, mut usage, mut ktype, mut klen) = (None, None, None, None);
        for c in crt.children().map_err(|e| malformed(what, e.to_string()))? {
            let c = c.map_err(|e| malformed(what, e.to_string()))?;
            let slot = match c.tag().value() {
                0x90 => &mut scp,
                0x95 => &mut usage,
                0x80 => &mut ktype,
                0x81 => &mut klen,
                t => return Err(malformed(what, format!("unexpected tag {t:02X} in A6"))),
            };
            if slot.replace(c.value()).is_some() {
                return Err(malformed(what, "repeated tag in A6"));
            }
        }
        let variant = match scp {
            Some([0x11, i]) => {
                Variant::from_i(*i).ok_or_else(|| malformed(what, format!("SCP11 i={i:02X}")))?
            }
            _ => return Err(malformed(what, "tag 90 is not 11 i")),
        };
        let one = |v: Option<&[u8]>, name: &str| match v {
            Some([b]) => Ok(*b),
            _ => Err(malformed(what, format!("{name}: want one byte"))),
        };
        let key_usage = one(usage, "key usage (95)")?;
        level_of_usage(key_usage)?;
        let key_type = one(ktype, "key type (80)")?;
        if key_type != KEY_TYPE_AES {
            return Err(Error::Unsupported(format!(
                "session key type {key_type:02X}"
            )));
        }
        let key_len = one(klen, "key length (81)")? as usize;
        if !matches!(key_len, 16 | 24 | 32) {
            return Err(Error::BadKeyLength {
                kind: "AES",
                len: key_len,
            });
        }
        let epk_oce = PublicKey::from_sec1(curve, epk.value())?;
        if epk_oce.to_sec1() != epk.value() {
            return Err(malformed(what, "ePK.OCE is not an uncompressed point"));
        }
        Ok(Self {
            variant,
            key_usage,
            key_type,
            key_len,
            epk_oce,
        })
    }
}

/// The response data of MUTUAL/INTERNAL AUTHENTICATE: `5F49 ePK.SD 86 receipt`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthResponse {
    /// The SD's ephemeral public key (SCP11c: PK.SD itself), as sent.
    pub epk_sd: Vec<u8>,
    /// The receipt (16 bytes).
    pub receipt: [u8; 16],
}

impl AuthResponse {
    /// Encodes the response data.
    pub fn to_bytes(&self) -> Vec<u8> {
        [
            tlv::encode(TAG_EPK, &self.epk_sd),
            tlv::encode(TAG_RECEIPT, &self.receipt),
        ]
        .concat()
    }

    /// Host side: parses the response data (exactly the two objects, in order).
    pub fn parse(data: &[u8]) -> Result<Self, Error> {
        let what = "SCP11 authenticate response";
        let items = tlv::parse_all_ref(data).map_err(|e| malformed(what, e.to_string()))?;
        match items.as_slice() {
            [e, r] if e.tag() == TAG_EPK && r.tag() == TAG_RECEIPT => Ok(Self {
                epk_sd: e.value().to_vec(),
                receipt: r
                    .value()
                    .try_into()
                    .map_err(|_| malformed(what, "receipt is not 16 bytes"))?,
            }),
            _ => Err(malformed(what, "want 5F49 ePK.SD then 86 receipt")),
        }
    }
}

/// The five keys of Amendment F §3.1.2, and the receipt check.
struct Derived {
    receipt_key: Zeroizing<Vec<u8>>,
    s_enc: Zeroizing<Vec<u8>>,
    s_mac: Zeroizing<Vec<u8>>,
    s_rmac: Zeroizing<Vec<u8>>,
    s_dek: Zeroizing<Vec<u8>>,
}

/// The ANSI X9.63 key derivation function with SHA-256 (SEC 1 v2 §3.6.1, NIST SP 800-135
/// §4.1): `SHA-256(Z ‖ counter ‖ SharedInfo)` for counter = 1, 2, … (32-bit big-endian),
/// concatenated and cut to `len` bytes. Used by the SCP11 key derivation (Amendment F
/// §3.1.2) and by `kms`'s key set transport. (RustCrypto's `ansi-x963-kdf` is still a
/// release candidate, so the ten lines are here, checked against the NIST CAVS vectors in
/// `kms`'s tests.)
pub fn x963_kdf_sha256(z: &[u8], shared_info: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut counter = 1u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(z);
        h.update(counter.to_be_bytes());
        h.update(shared_info);
        out.extend_from_slice(&h.finalize());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

fn derive(sh_ee: &[u8], sh_s: &[u8], usage: u8, key_len: usize) -> Derived {
    let z = Zeroizing::new([sh_ee, sh_s].concat());
    let material = x963_kdf_sha256(&z, &[usage, KEY_TYPE_AES, key_len as u8], 5 * key_len);
    let k = |i: usize| Zeroizing::new(material[i * key_len..(i + 1) * key_len].to_vec());
    Derived {
        receipt_key: k(0),
        s_enc: k(1),
        s_mac: k(2),
        s_rmac: k(3),
        s_dek: k(4),
    }
}

impl Derived {
    fn receipt(&self, request: &[u8], epk_sd: &[u8]) -> Result<[u8; 16], Error> {
        crypto::aes_cmac(&self.receipt_key, &[request, &tlv::encode(TAG_EPK, epk_sd)])
    }

    fn channel(self, params: &Params, receipt: [u8; 16]) -> Result<Channel, Error> {
        let dek = Key::aes(&self.s_dek)?;
        let s = Scp03::from_session_keys(
            params.sm_i(),
            params.level()?,
            [self.s_enc, self.s_mac, self.s_rmac],
            dek,
            receipt,
        )?;
        Ok(Channel::new(Inner::Scp03(s)))
    }
}

/// The host between sending MUTUAL/INTERNAL AUTHENTICATE and reading its answer.
pub struct HostAuth {
    params: Params,
    esk_oce: PrivateKey,
    request: Vec<u8>,
}

impl fmt::Debug for HostAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("scp11::HostAuth")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl HostAuth {
    /// Makes a fresh ephemeral key pair on the curve of `pk_sd` and builds the command.
    pub fn new(params: Params, pk_sd: &PublicKey) -> Result<Self, Error> {
        Self::with_ephemeral(params, PrivateKey::generate(pk_sd.curve())?)
    }

    /// Like [`HostAuth::new`] with a given ephemeral key (known-answer tests; never reuse an
    /// ephemeral key otherwise).
    pub fn with_ephemeral(params: Params, esk_oce: PrivateKey) -> Result<Self, Error> {
        params.check()?;
        let request = AuthRequest {
            variant: params.variant,
            key_usage: params.key_usage,
            key_type: KEY_TYPE_AES,
            key_len: params.key_len,
            epk_oce: esk_oce.public_key().clone(),
        }
        .to_bytes();
        Ok(Self {
            params,
            esk_oce,
            request,
        })
    }

    /// MUTUAL AUTHENTICATE `80 82 KVN KID` (11a/11c) or INTERNAL AUTHENTICATE `80 88 KVN KID`
    /// (11b), with Le = `00` (as OpenSCP and yubikit send it).
    pub fn command(&self) -> apdu::Command {
        apdu::Command::new(
            0x80,
            self.params.variant.ins(),
            self.params.kvn,
            self.params.kid,
        )
        .with_data(self.request.clone())
        .with_le(256)
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Reads the card's answer: the status must be `9000` ([`Error::Status`] otherwise),
    /// the ePK.SD a point on the curve of `pk_sd` (for 11c it must equal PK.SD), and the
    /// receipt must verify (constant-time compare, [`Error::ReceiptMismatch`]). `oce` is the
    /// OCE's static key: required for 11a/11c, ignored for 11b.
    pub fn finish(
        self,
        response: &apdu::Response,
        pk_sd: &PublicKey,
        oce: Option<&dyn OceKeyAgreement>,
    ) -> Result<HostSession, Error> {
        if !response.sw.is_success() {
            return Err(Error::Status(response.sw));
        }
        let resp = AuthResponse::parse(&response.data)?;
        let epk_sd = PublicKey::from_sec1(pk_sd.curve(), &resp.epk_sd)?;
        if self.params.variant == Variant::C && epk_sd != *pk_sd {
            return Err(malformed(
                "SCP11c authenticate response",
                "the SD's key is not PK.SD",
            ));
        }
        let sh_ee = self.esk_oce.agree(&epk_sd)?;
        let sh_s = match (self.params.variant, oce) {
            (Variant::B, _) => self.esk_oce.agree(pk_sd)?,
            (_, Some(oce)) => oce.agree(pk_sd)?,
            (v, None) => {
                return Err(Error::Unsupported(format!(
                    "SCP{v} needs the OCE's static key"
                )))
            }
        };
        let keys = derive(&sh_ee, &sh_s, self.params.key_usage, self.params.key_len);
        let want = keys.receipt(&self.request, &resp.epk_sd)?;
        if !bool::from(want.ct_eq(&resp.receipt)) {
            return Err(Error::ReceiptMismatch);
        }
        let channel = keys.channel(&self.params, resp.receipt)?;
        Ok(HostSession::from_channel(
            channel,
            self.params.kvn,
            Some(self.params.variant),
        ))
    }
}

/// What the card needs to answer MUTUAL/INTERNAL AUTHENTICATE.
#[derive(Debug, Clone, Copy)]
pub struct CardParams<'a> {
    /// The SD key pair the command names (P1 KVN, P2 KID).
    pub sk_sd: &'a PrivateKey,
    /// PK.OCE.ECKA from the OCE certificate the card verified (PERFORM SECURITY OPERATION);
    /// required for 11a/11c, `None` for 11b.
    pub pk_oce: Option<&'a PublicKey>,
    /// The variant the SD key is for (from its KID or key usage); a request for another is
    /// refused.
    pub variant: Variant,
    /// S16 mode.
    pub s16: bool,
}

/// Card side of MUTUAL/INTERNAL AUTHENTICATE: parses `data`, makes the ephemeral SD key
/// (11a/11b; 11c uses SK.SD), derives the keys and returns the response data
/// `5F49 ePK.SD 86 receipt` with the open session (the card answers it with `9000`).
///
/// Errors: malformed data or an unsupported option ([`Error::Malformed`],
/// [`Error::Unsupported`], [`Error::BadKeyLength`]: the card answers `6A80`), a request
/// for another variant than the key's, or 11a/11c without a verified OCE key
/// ([`Error::Unsupported`]: `6985`/`6982`, see `card`).
pub fn card_authenticate(p: &CardParams<'_>, data: &[u8]) -> Result<(Vec<u8>, CardSession), Error> {
    let esd = match p.variant {
        Variant::C => None,
        _ => Some(PrivateKey::generate(p.sk_sd.curve())?),
    };
    card_authenticate_with(p, data, esd)
}

/// [`card_authenticate`] with a given ephemeral SD key (tests; ignored for 11c).
pub fn card_authenticate_with(
    p: &CardParams<'_>,
    data: &[u8],
    esk_sd: Option<PrivateKey>,
) -> Result<(Vec<u8>, CardSession), Error> {
    let req = AuthRequest::parse(data, p.sk_sd.curve())?;
    if req.variant != p.variant {
        return Err(Error::Unsupported(format!(
            "SCP{} requested of an SCP{} key",
            req.variant, p.variant
        )));
    }
    let esk_sd = match (p.variant, esk_sd) {
        (Variant::C, _) => p.sk_sd.clone(),
        (_, Some(k)) => k,
        (_, None) => PrivateKey::generate(p.sk_sd.curve())?,
    };
    let sh_ee = esk_sd.agree(&req.epk_oce)?;
    let sh_s = match (p.variant, p.pk_oce) {
        (Variant::B, _) => p.sk_sd.agree(&req.epk_oce)?,
        (_, Some(pk)) => p.sk_sd.agree(pk)?,
        (v, None) => {
            return Err(Error::Unsupported(format!(
                "SCP{v} without a verified OCE certificate"
            )))
        }
    };
    let keys = derive(&sh_ee, &sh_s, req.key_usage, req.key_len);
    let epk_sd = esk_sd.public_key().to_sec1().to_vec();
    let receipt = keys.receipt(data, &epk_sd)?;
    let params = Params {
        variant: p.variant,
        kvn: 0,
        kid: 0,
        key_len: req.key_len,
        s16: p.s16,
        key_usage: req.key_usage,
    };
    let channel = keys.channel(&params, receipt)?;
    let resp = AuthResponse { epk_sd, receipt }.to_bytes();
    Ok((resp, CardSession::from_channel(channel, Some(p.variant))))
}
