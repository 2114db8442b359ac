//! Certificates, serial numbers and revocation vocabulary, plus the DER plumbing used to
//! build and check signed X.509 structures (RFC 5280).

use std::{fmt, str::FromStr, time::Duration};

use der::{
    asn1::{Any, AnyRef, BitString, BitStringRef, OctetString},
    Decode, Encode, EncodePem, Sequence,
};
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned};
use time::OffsetDateTime;
use x509_cert::{
    certificate::Version, ext::Extension, name::Name, serial_number::SerialNumber, time::Time,
    time::Validity,
};

use crate::key::{KeyError, PublicKey};

/// A certificate serial number (RFC 5280 §4.1.2.2): the unsigned big-endian value without
/// leading zero bytes. Ours are 16 random bytes with the top bit clear.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A serial from its big-endian bytes (leading zeros are removed; must be non-zero and
    /// at most 20 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let start = bytes.iter().position(|&b| b != 0)?;
        let v = &bytes[start..];
        (v.len() <= 20).then(|| Self(v.to_vec()))
    }

    /// 16 random bytes, top bit clear, first byte non-zero: a positive INTEGER whose DER
    /// content is exactly 16 octets (RFC 5280 §4.1.2.2; CA/B BR §7.1 asks for ≥ 64 random bits).
    pub fn random() -> Self {
        use rand::Rng as _;
        let mut b = [0u8; 16];
        let mut rng = rand::rng();
        loop {
            rng.fill_bytes(&mut b);
            b[0] &= 0x7F;
            if b[0] != 0 {
                return Self(b.to_vec());
            }
        }
    }

    /// Big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn to_x509(&self) -> Result<SerialNumber, der::Error> {
        SerialNumber::new(&self.0)
    }

    pub(crate) fn from_x509(serial: &SerialNumber) -> Option<Self> {
        Self::from_bytes(serial.as_bytes())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::util::hex(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl FromStr for Serial {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::util::parse_hex(s)
            .and_then(|b| Self::from_bytes(&b))
            .ok_or_else(|| format!("invalid serial number {s:?}"))
    }
}

impl TryFrom<String> for Serial {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> Self {
        s.to_string()
    }
}

/// Why a certificate was revoked (RFC 5280 §5.3.1 CRLReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RevocationReason {
    /// unspecified (0): no reasonCode extension is written (RFC 5280 §5.3.1).
    Unspecified,
    /// keyCompromise (1): e.g. the card was lost or stolen.
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3): the account changed.
    AffiliationChanged,
    /// superseded (4): the card was re-enrolled.
    Superseded,
    /// cessationOfOperation (5): the account or card was closed.
    CessationOfOperation,
    /// certificateHold (6). Treated as final here: there is no release from hold.
    CertificateHold,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        })
    }
}

/// The revocation status of a serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Issued by this CA and not revoked (it may still be expired).
    Good {
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// Revoked.
    Revoked {
        /// When.
        revoked_at: OffsetDateTime,
        /// Why.
        reason: RevocationReason,
    },
    /// Not issued by this CA (as far as the store knows).
    Unknown,
}

/// An X.509 certificate: its DER bytes and the parsed structure.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: x509_cert::Certificate,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("serial", &self.serial())
            .field("subject", &self.subject())
            .field("issuer", &self.issuer())
            .finish()
    }
}

impl Certificate {
    /// Parse DER. Trailing bytes are rejected.
    pub fn from_der(der: &[u8]) -> Result<Self, der::Error> {
        let parsed = x509_cert::Certificate::from_der(der)?;
        Ok(Self {
            der: der.to_vec(),
            parsed,
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM (`-----BEGIN CERTIFICATE-----`, LF line endings).
    pub fn to_pem(&self) -> String {
        self.parsed
            .to_pem(der::pem::LineEnding::LF)
            .unwrap_or_default()
    }

    /// The parsed structure (x509-cert).
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.parsed
    }

    /// Serial number (`None` only for a zero serial, which we never issue).
    pub fn serial(&self) -> Option<Serial> {
        Serial::from_x509(self.parsed.tbs_certificate().serial_number())
    }

    /// Subject as an RFC 4514 string.
    pub fn subject(&self) -> String {
        self.parsed.tbs_certificate().subject().to_string()
    }

    /// Issuer as an RFC 4514 string.
    pub fn issuer(&self) -> String {
        self.parsed.tbs_certificate().issuer().to_string()
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        from_x509_time(self.parsed.tbs_certificate().validity().not_before)
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        from_x509_time(self.parsed.tbs_certificate().validity().not_after)
    }

    /// The subject public key.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        let spki = self
            .parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| KeyError::Der(e.to_string()))?;
        PublicKey::from_spki_der(&spki)
    }
}

// ---------------------------------------------------------------------------------------
// DER plumbing
// ---------------------------------------------------------------------------------------

/// `TBSCertificate` as we write it (RFC 5280 §4.1): always v3 with extensions.
#[derive(Sequence)]
pub(crate) struct TbsCertificateOut {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub version: Version,
    pub serial_number: SerialNumber,
    pub signature: AlgorithmIdentifierOwned,
    pub issuer: Name,
    pub validity: Validity,
    pub subject: Name,
    pub subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    pub extensions: Vec<Extension>,
}

/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`: the shape shared by
/// `Certificate` (RFC 5280 §4.1.1), `CertificateList` (§5.1.1) and PKCS#10
/// `CertificationRequest` (RFC 2986 §4.2).
#[derive(Sequence)]
struct SignedOut {
    tbs: Any,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Borrowed view of a signed structure, keeping the exact bytes of the signed part.
#[derive(Sequence)]
pub(crate) struct SignedRef<'a> {
    pub tbs: AnyRef<'a>,
    pub algorithm: AlgorithmIdentifierRef<'a>,
    pub signature: BitStringRef<'a>,
}

impl SignedRef<'_> {
    /// The exact DER of the signed part (re-encoding an `AnyRef` reproduces its input,
    /// since `der` only accepts minimal-length DER headers).
    pub fn tbs_der(&self) -> Result<Vec<u8>, der::Error> {
        self.tbs.to_der()
    }

    /// The signature algorithm's DER.
    pub fn algorithm_der(&self) -> Vec<u8> {
        crate::key::algorithm_der(&self.algorithm)
    }
}

/// Assemble `SEQUENCE { tbs, alg, BIT STRING sig }`.
pub(crate) fn assemble_signed(
    tbs_der: &[u8],
    algorithm_der: &[u8],
    signature: &[u8],
) -> Result<Vec<u8>, der::Error> {
    SignedOut {
        tbs: Any::from_der(tbs_der)?,
        algorithm: AlgorithmIdentifierOwned::from_der(algorithm_der)?,
        signature: BitString::from_bytes(signature)?,
    }
    .to_der()
}

/// An extension with its value DER-encoded.
pub(crate) fn extension(
    oid: spki::ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// Key identifier per RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey BIT STRING value.
pub(crate) fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> [u8; 20] {
    let h = crate::key::sha256(spki.subject_public_key.raw_bytes());
    let mut id = [0u8; 20];
    id.copy_from_slice(&h[..20]);
    id
}

/// X.509 `Time` for an instant: UTCTime through 2049, GeneralizedTime after
/// (RFC 5280 §4.1.2.5). Instants before 1970 are clamped to the epoch.
pub(crate) fn to_x509_time(t: OffsetDateTime) -> Result<Time, der::Error> {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    Ok(Time::from(der::DateTime::from_unix_duration(
        Duration::from_secs(secs),
    )?))
}

pub(crate) fn from_x509_time(t: Time) -> OffsetDateTime {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serial_is_16_positive_bytes() {
        for _ in 0..64 {
            let s = Serial::random();
            assert_eq!(s.as_bytes().len(), 16);
            assert!(s.as_bytes()[0] > 0 && s.as_bytes()[0] < 0x80);
            let der = s.to_x509().unwrap().to_der().unwrap();
            assert_eq!(&der[..2], &[0x02, 0x10]);
        }
    }

    #[test]
    fn serial_text_round_trip() {
        let s = Serial::from_bytes(&[0, 0, 0x12, 0x34]).unwrap();
        assert_eq!(s.to_string(), "1234");
        assert_eq!("1234".parse::<Serial>().unwrap(), s);
        assert!("".parse::<Serial>().is_err());
        assert!("00".parse::<Serial>().is_err());
        assert!(Serial::from_bytes(&[1; 21]).is_none());
    }

    #[test]
    fn times_switch_to_generalized_after_2049() {
        let t = OffsetDateTime::from_unix_timestamp(2_524_608_000).unwrap(); // 2050-01-01
        assert!(matches!(to_x509_time(t).unwrap(), Time::GeneralTime(_)));
        let t = OffsetDateTime::from_unix_timestamp(2_524_607_999).unwrap();
        assert!(matches!(to_x509_time(t).unwrap(), Time::UtcTime(_)));
        assert_eq!(from_x509_time(to_x509_time(t).unwrap()), t);
    }
}
