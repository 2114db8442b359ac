//! SCP11 certificates (GP Card Specification v2.3 Amendment F §6): the GlobalPlatform
//! format (`7F21`) and X.509, with ECDSA P-256/P-384 signatures, and the chain check a
//! security domain runs on PERFORM SECURITY OPERATION (and a host runs on `BF21`).
//!
//! GP certificate (`7F21`), in this order: `93` serial number, `42` CA-KLOC (issuer)
//! identifier, `5F20` subject identifier, `95` key usage, `5F25` effective date (optional),
//! `5F24` expiration date, `53`/`73` discretionary data (optional), `BF20` restrictions
//! (optional), `7F49 {B0 public key, F0 key parameter reference}`, `5F37` signature.
//! The signature covers the concatenated TLVs before `5F37`; it is ECDSA with SHA-256 for
//! a P-256 issuer key and SHA-384 for P-384, DER-encoded (as OpenSCP writes it; a raw
//! `r ‖ s` is accepted too). Dates are BCD `YYYYMMDD`.
//!
//! Chain verification ([`verify_chain`]): certificates in the order PERFORM SECURITY
//! OPERATION sends them and `BF21` returns them — the one signed by the trust anchor first,
//! the leaf (OCE or SD key) last. Each link: the issuer named by certificate *i* is the
//! subject of certificate *i−1* (GP: `42` = previous `5F20`; X.509: issuer = previous
//! subject; the first against [`ChainPolicy::anchor_id`] when given), the signature
//! verifies with the previous key (the anchor's for the first), the validity period holds
//! at [`ChainPolicy::at`] (skipped when `None`: a card without a clock), the leaf allows
//! key agreement (GP key usage b8 of the last byte, `…80`; X.509 keyUsage keyAgreement when
//! the extension is present) and, with an allowlist, the leaf's serial number is on it.
//!
//! Status words ([`ChainError::status_word`]), our choice where Amendment F leaves it
//! open: malformed or unsupported certificate or key usage `6A80`; broken link, bad
//! signature, expired, not yet valid, not allowlisted `6982` (security status not
//! satisfied); no trust anchor for the KVN/KID is the caller's `6A88`.

use apdu::tlv::{self, Tag};
use apdu::StatusWord;
use core::fmt;
use der::{Decode, Encode};
use scp::scp11::{Curve, PrivateKey, PublicKey};
use sha2::{Digest, Sha256, Sha384};
use signature::hazmat::{PrehashSigner, PrehashVerifier};

const TAG_CERT: Tag = Tag::new(0x7F21);
const TAG_SERIAL: Tag = Tag::new(0x93);
const TAG_CA_ID: Tag = Tag::new(0x42);
const TAG_SUBJECT_ID: Tag = Tag::new(0x5F20);
const TAG_KEY_USAGE: Tag = Tag::new(0x95);
const TAG_EFFECTIVE: Tag = Tag::new(0x5F25);
const TAG_EXPIRY: Tag = Tag::new(0x5F24);
const TAG_DISCRETIONARY: Tag = Tag::new(0x53);
const TAG_DISCRETIONARY_C: Tag = Tag::new(0x73);
const TAG_RESTRICTIONS: Tag = Tag::new(0xBF20);
const TAG_PUBLIC_KEY: Tag = Tag::new(0x7F49);
const TAG_POINT: Tag = Tag::new(0xB0);
const TAG_PARAM_REF: Tag = Tag::new(0xF0);
const TAG_SIGNATURE: Tag = Tag::new(0x5F37);

/// GP certificate key usage for key agreement (ECKA), as in OpenSCP's certificates.
pub const KEY_USAGE_KEY_AGREEMENT: [u8; 2] = [0x00, 0x80];

/// Why a certificate or a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain has no certificate.
    #[error("empty certificate chain")]
    Empty,
    /// Certificate `index` cannot be read (or uses an unsupported algorithm).
    #[error("certificate {index}: malformed: {detail}")]
    Malformed {
        /// Position in the chain (0 = signed by the trust anchor).
        index: usize,
        /// What is wrong.
        detail: String,
    },
    /// Certificate `index` names another issuer than the previous certificate's subject
    /// (or than the trust anchor's identifier).
    #[error(
        "certificate {index}: broken link: its issuer is not the previous certificate's subject"
    )]
    BrokenLink {
        /// Position in the chain.
        index: usize,
    },
    /// The signature of certificate `index` does not verify with the issuer's key.
    #[error("certificate {index}: bad signature")]
    BadSignature {
        /// Position in the chain.
        index: usize,
    },
    /// Certificate `index` expired before the verification time.
    #[error("certificate {index}: expired")]
    Expired {
        /// Position in the chain.
        index: usize,
    },
    /// Certificate `index` is not valid yet at the verification time.
    #[error("certificate {index}: not yet valid")]
    NotYetValid {
        /// Position in the chain.
        index: usize,
    },
    /// The leaf's key usage does not allow key agreement.
    #[error("certificate {index}: key usage does not allow key agreement")]
    KeyUsage {
        /// Position in the chain.
        index: usize,
    },
    /// The leaf's serial number is not on the allowlist.
    #[error("certificate serial number {serial} is not on the allowlist")]
    NotAllowlisted {
        /// The serial number, hex.
        serial: String,
    },
}

impl ChainError {
    /// The status word a card answers PERFORM SECURITY OPERATION with (see the module
    /// documentation).
    pub fn status_word(&self) -> StatusWord {
        match self {
            ChainError::Empty | ChainError::Malformed { .. } | ChainError::KeyUsage { .. } => {
                StatusWord::WRONG_DATA
            }
            _ => StatusWord::SECURITY_NOT_SATISFIED,
        }
    }
}

fn malformed(index: usize, detail: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        index,
        detail: detail.into(),
    }
}

/// A date in a GP certificate: BCD `YYYYMMDD` (kept as sent; checked when used).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpDate(pub [u8; 4]);

impl fmt::Debug for GpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpDate({})", apdu::hex(&self.0))
    }
}

impl GpDate {
    /// The date of a year, month and day (BCD-encoded).
    pub fn new(year: u16, month: u8, day: u8) -> Self {
        let bcd = |v: u8| ((v / 10) << 4) | (v % 10);
        GpDate([
            bcd((year / 100) as u8),
            bcd((year % 100) as u8),
            bcd(month),
            bcd(day),
        ])
    }

    /// Year, month, day, if the bytes are valid BCD and a plausible date.
    pub fn ymd(self) -> Option<(u16, u8, u8)> {
        let d = |b: u8| ((b >> 4) <= 9 && (b & 0xF) <= 9).then(|| (b >> 4) * 10 + (b & 0xF));
        let (c, y, m, day) = (d(self.0[0])?, d(self.0[1])?, d(self.0[2])?, d(self.0[3])?);
        ((1..=12).contains(&m) && (1..=31).contains(&day))
            .then(|| (u16::from(c) * 100 + u16::from(y), m, day))
    }

    /// Seconds since the Unix epoch of 00:00:00 UTC on this date.
    pub fn unix_start(self) -> Option<u64> {
        let (y, m, d) = self.ymd()?;
        let days = days_from_civil(i64::from(y), i64::from(m), i64::from(d));
        u64::try_from(days * 86_400).ok()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The signed part of a GP certificate (everything before `5F37`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GpCertificateBody {
    /// `93`: serial number.
    pub serial: Vec<u8>,
    /// `42`: CA-KLOC (issuer) identifier.
    pub ca_id: Vec<u8>,
    /// `5F20`: subject identifier.
    pub subject_id: Vec<u8>,
    /// `95`: key usage ([`KEY_USAGE_KEY_AGREEMENT`] for SCP11 keys).
    pub key_usage: Vec<u8>,
    /// `5F25`: effective date.
    pub effective: Option<GpDate>,
    /// `5F24`: expiration date.
    pub expiry: GpDate,
    /// `53` (primitive) or `73` (constructed) discretionary data: (tag, value).
    pub discretionary: Option<(u8, Vec<u8>)>,
    /// `BF20`: restrictions / authorisations (value).
    pub restrictions: Option<Vec<u8>>,
    /// `7F49`: the subject's public key.
    pub public_key: PublicKey,
}

impl GpCertificateBody {
    /// The encoded TLVs (what the signature covers).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        tlv::encode_into(&mut out, TAG_SERIAL, &self.serial);
        tlv::encode_into(&mut out, TAG_CA_ID, &self.ca_id);
        tlv::encode_into(&mut out, TAG_SUBJECT_ID, &self.subject_id);
        tlv::encode_into(&mut out, TAG_KEY_USAGE, &self.key_usage);
        if let Some(d) = self.effective {
            tlv::encode_into(&mut out, TAG_EFFECTIVE, &d.0);
        }
        tlv::encode_into(&mut out, TAG_EXPIRY, &self.expiry.0);
        if let Some((t, v)) = &self.discretionary {
            let tag = if *t == 0x73 {
                TAG_DISCRETIONARY_C
            } else {
                TAG_DISCRETIONARY
            };
            tlv::encode_into(&mut out, tag, v);
        }
        if let Some(r) = &self.restrictions {
            tlv::encode_into(&mut out, TAG_RESTRICTIONS, r);
        }
        let pk = [
            tlv::encode(TAG_POINT, self.public_key.to_sec1()),
            tlv::encode(TAG_PARAM_REF, &[self.public_key.curve().param_ref()]),
        ]
        .concat();
        tlv::encode_into(&mut out, TAG_PUBLIC_KEY, &pk);
        out
    }

    /// Signs the body with the issuer's key (ECDSA, SHA-256 for P-256 and SHA-384 for
    /// P-384, deterministic per RFC 6979, DER-encoded) — for tests, and for a CA in a key
    /// store that holds its key in memory.
    pub fn sign(self, issuer: &PrivateKey) -> Result<GpCertificate, ChainError> {
        let tbs = self.to_bytes();
        let signature = ecdsa_sign(issuer, &tbs).map_err(|e| malformed(0, e))?;
        Ok(self.with_signature(signature))
    }

    /// The certificate with a signature made elsewhere (an HSM).
    pub fn with_signature(self, signature: Vec<u8>) -> GpCertificate {
        let mut inner = self.to_bytes();
        tlv::encode_into(&mut inner, TAG_SIGNATURE, &signature);
        GpCertificate {
            raw: tlv::encode(TAG_CERT, &inner),
            body: self,
            signature,
        }
    }
}

/// A GP-format certificate (`7F21`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GpCertificate {
    /// The signed fields.
    pub body: GpCertificateBody,
    /// `5F37`: the signature.
    pub signature: Vec<u8>,
    raw: Vec<u8>,
}

impl GpCertificate {
    /// Parses a `7F21` certificate (exactly one, no trailing bytes). Tags must come in the
    /// order of the module documentation; unknown tags are refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, ChainError> {
        let m = |d: String| malformed(0, d);
        let outer = tlv::TlvRef::parse(bytes).map_err(|e| m(e.to_string()))?;
        if outer.tag() != TAG_CERT {
            return Err(m(format!("tag {} is not 7F21", outer.tag())));
        }
        let items = tlv::parse_all_ref(outer.value()).map_err(|e| m(e.to_string()))?;
        let mut it = items.iter().peekable();
        let mut take = |tag: Tag, optional: bool| -> Result<Option<&[u8]>, ChainError> {
            match it.peek() {
                Some(t) if t.tag() == tag => Ok(it.next().map(|t| t.value())),
                _ if optional => Ok(None),
                Some(t) => Err(m(format!("expected tag {tag}, found {}", t.tag()))),
                None => Err(m(format!("missing tag {tag}"))),
            }
        };
        let serial = take(TAG_SERIAL, false)?.unwrap_or_default().to_vec();
        let ca_id = take(TAG_CA_ID, false)?.unwrap_or_default().to_vec();
        let subject_id = take(TAG_SUBJECT_ID, false)?.unwrap_or_default().to_vec();
        let key_usage = take(TAG_KEY_USAGE, false)?.unwrap_or_default().to_vec();
        let date = |v: &[u8]| -> Result<GpDate, ChainError> {
            v.try_into()
                .map(GpDate)
                .map_err(|_| m("date is not 4 bytes".into()))
        };
        let effective = take(TAG_EFFECTIVE, true)?.map(date).transpose()?;
        let expiry = date(take(TAG_EXPIRY, false)?.unwrap_or_default())?;
        let discretionary = match take(TAG_DISCRETIONARY, true)? {
            Some(v) => Some((0x53, v.to_vec())),
            None => take(TAG_DISCRETIONARY_C, true)?.map(|v| (0x73, v.to_vec())),
        };
        let restrictions = take(TAG_RESTRICTIONS, true)?.map(<[u8]>::to_vec);
        let pk = take(TAG_PUBLIC_KEY, false)?.unwrap_or_default();
        let signature = take(TAG_SIGNATURE, false)?.unwrap_or_default().to_vec();
        if let Some(t) = it.next() {
            return Err(m(format!("unexpected tag {} after 5F37", t.tag())));
        }
        let pk_items = tlv::parse_all_ref(pk).map_err(|e| m(e.to_string()))?;
        let (point, curve) = match pk_items.as_slice() {
            [b0, f0] if b0.tag() == TAG_POINT && f0.tag() == TAG_PARAM_REF => {
                let curve = match f0.value() {
                    [r] => Curve::from_param_ref(*r)
                        .ok_or_else(|| m(format!("key parameter reference {r:02X}")))?,
                    _ => return Err(m("F0 is not one byte".into())),
                };
                (b0.value(), curve)
            }
            _ => return Err(m("7F49 is not {B0, F0}".into())),
        };
        let public_key = PublicKey::from_sec1(curve, point).map_err(|e| m(e.to_string()))?;
        if serial.is_empty() || serial.len() > 20 {
            return Err(m("serial number (93) is not 1..=20 bytes".into()));
        }
        Ok(Self {
            body: GpCertificateBody {
                serial,
                ca_id,
                subject_id,
                key_usage,
                effective,
                expiry,
                discretionary,
                restrictions,
                public_key,
            },
            signature,
            raw: bytes.to_vec(),
        })
    }

    /// The encoding (as parsed, or as built).
    pub fn to_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the signature covers: the value of `7F21` up to `5F37`.
    pub fn tbs(&self) -> Vec<u8> {
        self.body.to_bytes()
    }
}

/// An X.509 certificate with an EC P-256/P-384 subject key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct X509Certificate {
    raw: Vec<u8>,
    tbs: Vec<u8>,
    serial: Vec<u8>,
    issuer: Vec<u8>,
    subject: Vec<u8>,
    not_before: u64,
    not_after: u64,
    public_key: PublicKey,
    /// `true` if SHA-384, `false` if SHA-256.
    sha384: bool,
    signature: Vec<u8>,
    /// `Some(allows)` when a keyUsage extension is present.
    key_agreement: Option<bool>,
    authority_key_id: Option<Vec<u8>>,
}

const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";

impl X509Certificate {
    /// Parses a DER X.509 certificate signed with ecdsa-with-SHA256 or -SHA384 whose
    /// subject key is P-256 or P-384. Non-canonical DER is refused.
    pub fn parse(der_bytes: &[u8]) -> Result<Self, ChainError> {
        use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsage, KeyUsages};
        let m = |d: String| malformed(0, d);
        let cert = x509_cert::Certificate::from_der(der_bytes).map_err(|e| m(e.to_string()))?;
        if cert.to_der().map_err(|e| m(e.to_string()))? != der_bytes {
            return Err(m("not canonical DER".into()));
        }
        let tbs_cert = cert.tbs_certificate();
        let alg = cert.signature_algorithm().oid.to_string();
        let sha384 = match alg.as_str() {
            ECDSA_SHA256 => false,
            ECDSA_SHA384 => true,
            other => return Err(m(format!("signature algorithm {other}"))),
        };
        let spki = tbs_cert
            .subject_public_key_info()
            .to_der()
            .map_err(|e| m(e.to_string()))?;
        let public_key = PublicKey::from_spki_der(&spki).map_err(|e| m(e.to_string()))?;
        let validity = tbs_cert.validity();
        let key_agreement = tbs_cert
            .get_extension::<KeyUsage>()
            .map_err(|e| m(e.to_string()))?
            .map(|(_, ku)| ku.0.contains(KeyUsages::KeyAgreement));
        let authority_key_id = tbs_cert
            .get_extension::<AuthorityKeyIdentifier>()
            .map_err(|e| m(e.to_string()))?
            .and_then(|(_, aki)| aki.key_identifier.map(|k| k.as_bytes().to_vec()));
        Ok(Self {
            raw: der_bytes.to_vec(),
            tbs: tbs_cert.to_der().map_err(|e| m(e.to_string()))?,
            serial: tbs_cert.serial_number().as_bytes().to_vec(),
            issuer: tbs_cert.issuer().to_der().map_err(|e| m(e.to_string()))?,
            subject: tbs_cert.subject().to_der().map_err(|e| m(e.to_string()))?,
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            public_key,
            sha384,
            signature: cert
                .signature()
                .as_bytes()
                .ok_or_else(|| m("signature has unused bits".into()))?
                .to_vec(),
            key_agreement,
            authority_key_id,
        })
    }

    /// The DER encoding.
    pub fn to_bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// A certificate of either format.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Certificate {
    /// GlobalPlatform format (`7F21`).
    Gp(GpCertificate),
    /// X.509 (DER `30…`).
    X509(X509Certificate),
}

impl Certificate {
    /// Parses one certificate, telling the format by its first byte (`7F` or `30`).
    pub fn parse(bytes: &[u8]) -> Result<Self, ChainError> {
        match bytes.first() {
            Some(0x7F) => GpCertificate::parse(bytes).map(Certificate::Gp),
            Some(0x30) => X509Certificate::parse(bytes).map(Certificate::X509),
            _ => Err(malformed(
                0,
                "neither a GP (7F21) nor an X.509 (30) certificate",
            )),
        }
    }

    /// The encoding.
    pub fn to_bytes(&self) -> &[u8] {
        match self {
            Certificate::Gp(c) => c.to_bytes(),
            Certificate::X509(c) => c.to_bytes(),
        }
    }

    /// The subject's public key.
    pub fn public_key(&self) -> &PublicKey {
        match self {
            Certificate::Gp(c) => &c.body.public_key,
            Certificate::X509(c) => &c.public_key,
        }
    }

    /// The serial number (GP `93`; X.509 serialNumber content octets).
    pub fn serial(&self) -> &[u8] {
        match self {
            Certificate::Gp(c) => &c.body.serial,
            Certificate::X509(c) => &c.serial,
        }
    }

    /// Validity as Unix seconds: (not before, not after), inclusive. GP dates run from
    /// 00:00:00 UTC of the effective date to 23:59:59 UTC of the expiration date.
    pub fn validity(&self) -> Result<(Option<u64>, u64), ChainError> {
        match self {
            Certificate::Gp(c) => {
                let bad = || malformed(0, "date is not BCD YYYYMMDD");
                let from = c
                    .body
                    .effective
                    .map(|d| d.unix_start().ok_or_else(bad))
                    .transpose()?;
                let to = c.body.expiry.unix_start().ok_or_else(bad)? + 86_399;
                Ok((from, to))
            }
            Certificate::X509(c) => Ok((Some(c.not_before), c.not_after)),
        }
    }

    /// Whether the key may be used for key agreement (ECKA).
    pub fn allows_key_agreement(&self) -> bool {
        match self {
            Certificate::Gp(c) => c.body.key_usage.last().is_some_and(|b| b & 0x80 != 0),
            Certificate::X509(c) => c.key_agreement.unwrap_or(true),
        }
    }

    /// Verifies the signature with the issuer's public key.
    pub fn verify_signature(&self, issuer: &PublicKey) -> bool {
        match self {
            Certificate::Gp(c) => ecdsa_verify(issuer, None, &c.tbs(), &c.signature),
            Certificate::X509(c) => ecdsa_verify(issuer, Some(c.sha384), &c.tbs, &c.signature),
        }
    }

    /// Whether `self` names `prev` as its issuer (see [`verify_chain`]).
    fn issued_by(&self, prev: &Certificate) -> bool {
        match (self, prev) {
            (Certificate::Gp(c), Certificate::Gp(p)) => c.body.ca_id == p.body.subject_id,
            (Certificate::X509(c), Certificate::X509(p)) => c.issuer == p.subject,
            // Mixed chains: the signature is the link.
            _ => true,
        }
    }

    fn names_anchor(&self, id: &[u8]) -> bool {
        match self {
            Certificate::Gp(c) => c.body.ca_id == id,
            Certificate::X509(c) => c.authority_key_id.as_deref().is_none_or(|k| k == id),
        }
    }
}

/// What a chain is checked against besides the trust anchor key.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChainPolicy<'a> {
    /// Verification time in Unix seconds; `None` skips the validity periods.
    pub at: Option<u64>,
    /// The trust anchor's identifier (GP `42` / X.509 authority key identifier of the
    /// first certificate), if the SD stores one (yubikit's "CA issuer").
    pub anchor_id: Option<&'a [u8]>,
    /// Serial numbers allowed for the leaf; `None` = no allowlist.
    pub allowlist: Option<&'a [Vec<u8>]>,
    /// Do not require the leaf to allow key agreement (e.g. a chain for a signing key).
    pub skip_key_usage: bool,
}

/// Checks a chain (first signed by `anchor`, leaf last) link by link and returns the
/// leaf's public key. See the module documentation for the checks and their order.
pub fn verify_chain<'c>(
    chain: &'c [Certificate],
    anchor: &PublicKey,
    policy: &ChainPolicy<'_>,
) -> Result<&'c PublicKey, ChainError> {
    let leaf = chain.last().ok_or(ChainError::Empty)?;
    let mut issuer = anchor;
    for (index, cert) in chain.iter().enumerate() {
        let linked = match index {
            0 => policy.anchor_id.is_none_or(|id| cert.names_anchor(id)),
            _ => cert.issued_by(&chain[index - 1]),
        };
        if !linked {
            return Err(ChainError::BrokenLink { index });
        }
        if !cert.verify_signature(issuer) {
            return Err(ChainError::BadSignature { index });
        }
        if let Some(now) = policy.at {
            let (from, to) = cert.validity().map_err(|e| match e {
                ChainError::Malformed { detail, .. } => ChainError::Malformed { index, detail },
                e => e,
            })?;
            if from.is_some_and(|f| now < f) {
                return Err(ChainError::NotYetValid { index });
            }
            if now > to {
                return Err(ChainError::Expired { index });
            }
        }
        issuer = cert.public_key();
    }
    if !policy.skip_key_usage && !leaf.allows_key_agreement() {
        return Err(ChainError::KeyUsage {
            index: chain.len() - 1,
        });
    }
    if let Some(list) = policy.allowlist {
        if !list.iter().any(|s| s.as_slice() == leaf.serial()) {
            return Err(ChainError::NotAllowlisted {
                serial: apdu::hex(leaf.serial()),
            });
        }
    }
    Ok(leaf.public_key())
}

/// Parses a chain given as separate certificates (what PERFORM SECURITY OPERATION
/// carries), fixing up the index in errors.
pub fn parse_chain<B: AsRef<[u8]>>(certs: &[B]) -> Result<Vec<Certificate>, ChainError> {
    certs
        .iter()
        .enumerate()
        .map(|(index, c)| {
            Certificate::parse(c.as_ref()).map_err(|e| match e {
                ChainError::Malformed { detail, .. } => ChainError::Malformed { index, detail },
                e => e,
            })
        })
        .collect()
}

/// ECDSA over `msg` with the key's usual hash (SHA-256 for P-256, SHA-384 for P-384),
/// DER-encoded.
pub fn ecdsa_sign(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, String> {
    match key.curve() {
        Curve::P256 => {
            let k = p256::ecdsa::SigningKey::from_slice(key.expose_scalar())
                .map_err(|e| e.to_string())?;
            let s: p256::ecdsa::Signature = k
                .sign_prehash(&Sha256::digest(msg))
                .map_err(|e| e.to_string())?;
            Ok(s.to_der().as_bytes().to_vec())
        }
        Curve::P384 => {
            let k = p384::ecdsa::SigningKey::from_slice(key.expose_scalar())
                .map_err(|e| e.to_string())?;
            let s: p384::ecdsa::Signature = k
                .sign_prehash(&Sha384::digest(msg))
                .map_err(|e| e.to_string())?;
            Ok(s.to_der().as_bytes().to_vec())
        }
    }
}

/// Verifies ECDSA; `sha384: None` picks the hash by the key's curve. The signature may be
/// DER or raw `r ‖ s`.
pub fn ecdsa_verify(key: &PublicKey, sha384: Option<bool>, msg: &[u8], sig: &[u8]) -> bool {
    let sha384 = sha384.unwrap_or(key.curve() == Curve::P384);
    let digest = if sha384 {
        Sha384::digest(msg).to_vec()
    } else {
        Sha256::digest(msg).to_vec()
    };
    match key.curve() {
        Curve::P256 => {
            let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(key.to_sec1()) else {
                return false;
            };
            let Some(s) = p256::ecdsa::Signature::from_der(sig)
                .ok()
                .or_else(|| p256::ecdsa::Signature::from_slice(sig).ok())
            else {
                return false;
            };
            vk.verify_prehash(&digest, &s).is_ok()
        }
        Curve::P384 => {
            let Ok(vk) = p384::ecdsa::VerifyingKey::from_sec1_bytes(key.to_sec1()) else {
                return false;
            };
            let Some(s) = p384::ecdsa::Signature::from_der(sig)
                .ok()
                .or_else(|| p384::ecdsa::Signature::from_slice(sig).ok())
            else {
                return false;
            };
            vk.verify_prehash(&digest, &s).is_ok()
        }
    }
}
