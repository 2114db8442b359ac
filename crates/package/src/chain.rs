//! Whether the signer is trusted: the certification path from the signer's certificate to
//! a trust anchor (RFC 5280 §6, the parts a package needs), and revocation by CRLs (§5).
//!
//! Written by hand over the `x509-cert` types, because no maintained crate validates an
//! X.509 path offline for arbitrary anchors (rustls-webpki does it for TLS server and client
//! certificates only, with its own key-usage rules). What is checked:
//! * the path: each certificate's issuer name equals the next one's subject (DER-equal names,
//!   the RFC 4518 matching rules are not applied), its signature verifies under the next
//!   one's key (ECDSA P-256, RSA PKCS#1 v1.5 or RSASSA-PSS with SHA-256), the outer and inner
//!   signature algorithms agree (§4.1.1.2); it ends at a trust anchor's certificate (or is
//!   that certificate); at most [`MAX_PATH`] certificates;
//! * every issuer: basicConstraints `cA` TRUE, keyUsage (when present) with `keyCertSign`,
//!   `pathLenConstraint` kept (§4.2.1.9, §4.2.1.3);
//! * the signer: keyUsage (when present) with `digitalSignature` or `nonRepudiation`;
//! * no certificate below the anchor with a critical extension other than those above,
//!   extKeyUsage, subjectAltName and the key identifiers (§4.2: refuse what is not understood);
//! * every certificate, the anchor too, valid at the policy's `now`;
//! * revocation: a CRL (from the package or the policy) whose issuer is a certificate's
//!   issuer and whose signature verifies under that issuer's key (with `cRLSign` when keyUsage
//!   is present) and that has no critical extension we do not understand, listing the serial.
//!   A CRL that does not verify is ignored (it says nothing), as is a CRL's age: a listed
//!   serial stays revoked.

use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_CRL_NUMBER, ID_CE_CRL_REASONS,
    ID_CE_EXT_KEY_USAGE, ID_CE_INVALIDITY_DATE, ID_CE_KEY_USAGE, ID_CE_SUBJECT_ALT_NAME,
    ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use der::{asn1::BitStringRef, AnyRef, Decode, Encode, Reader, SliceReader, Tag, Tagged};
use pki::PublicKey;
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;
use x509_cert::{
    crl::CertificateList,
    ext::{
        pkix::{BasicConstraints, KeyUsage},
        Extension,
    },
    time::Time,
    Certificate,
};

use crate::{algorithm::Algorithm, Refusal, TrustPolicy};

/// Longest certification path, certificates (signer, intermediates, anchor).
pub const MAX_PATH: usize = 8;

/// A certificate and its DER.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    pub x509: Certificate,
    pub der: Vec<u8>,
}

/// A CRL and its DER.
#[derive(Debug, Clone)]
pub(crate) struct Crl {
    pub x509: CertificateList,
    pub der: Vec<u8>,
}

/// `SEQUENCE { tbs, signatureAlgorithm, signatureValue }` of a certificate or CRL: the TBS
/// as its DER bytes (what was signed), the algorithm and the signature.
fn split_signed(der: &[u8]) -> der::Result<(&[u8], AlgorithmIdentifierOwned, Vec<u8>)> {
    let outer = AnyRef::from_der(der)?;
    if outer.tag() != Tag::Sequence {
        return Err(Tag::Sequence.value_error().into());
    }
    let mut r = SliceReader::new(outer.value())?;
    let tbs = r.tlv_bytes()?;
    let algorithm = r.decode::<AlgorithmIdentifierOwned>()?;
    let signature = r.decode::<BitStringRef<'_>>()?;
    r.finish()?;
    let signature = signature
        .as_bytes()
        .ok_or_else(|| der::Error::from(Tag::BitString.value_error()))?;
    Ok((tbs, algorithm, signature.to_vec()))
}

/// Checks the signature of the signed structure `der` (whose inner algorithm is `inner`)
/// under `key`.
fn check_signed(
    der: &[u8],
    inner: &AlgorithmIdentifierOwned,
    key: &PublicKey,
) -> Result<(), String> {
    let (tbs, outer, signature) = split_signed(der).map_err(|e| e.to_string())?;
    if outer != *inner {
        return Err(
            "the signature algorithm differs inside and outside (RFC 5280 §4.1.1.2)".into(),
        );
    }
    Algorithm::from_identifier(&outer)?.verify(key, tbs, &signature)
}

/// An x509 time as an instant.
pub(crate) fn to_offset(t: Time) -> OffsetDateTime {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    // x509 times end in 9999, within `time`'s range.
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Cert {
    pub(crate) fn from_der(der: &[u8]) -> der::Result<Self> {
        let x509 = Certificate::from_der(der)?;
        split_signed(der)?;
        Ok(Self {
            x509,
            der: der.to_vec(),
        })
    }

    /// The subject as an RFC 4514 string.
    pub(crate) fn subject(&self) -> String {
        self.x509.tbs_certificate().subject().to_string()
    }

    fn subject_der(&self) -> Vec<u8> {
        self.x509
            .tbs_certificate()
            .subject()
            .to_der()
            .unwrap_or_default()
    }

    fn issuer_der(&self) -> Vec<u8> {
        self.x509
            .tbs_certificate()
            .issuer()
            .to_der()
            .unwrap_or_default()
    }

    /// The subject public key (P-256 or RSA 2048/3072/4096).
    pub(crate) fn public_key(&self) -> Result<PublicKey, String> {
        let spki = self
            .x509
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| e.to_string())?;
        PublicKey::from_spki_der(&spki).map_err(|e| format!("{}: {e}", self.subject()))
    }

    fn not_before(&self) -> OffsetDateTime {
        to_offset(self.x509.tbs_certificate().validity().not_before)
    }

    fn not_after(&self) -> OffsetDateTime {
        to_offset(self.x509.tbs_certificate().validity().not_after)
    }

    fn extensions(&self) -> &[Extension] {
        self.x509
            .tbs_certificate()
            .extensions()
            .map_or(&[], |e| e.as_slice())
    }

    fn extension<'a, T: Decode<'a>>(
        &'a self,
        oid: der::asn1::ObjectIdentifier,
    ) -> Result<Option<T>, String> {
        match self.extensions().iter().find(|e| e.extn_id == oid) {
            None => Ok(None),
            Some(e) => T::from_der(e.extn_value.as_bytes())
                .map(Some)
                .map_err(|_| format!("{}: extension {oid} does not decode", self.subject())),
        }
    }

    /// Whether `issuer` issued this certificate: names chain and the signature verifies.
    fn issued_by(&self, issuer: &Cert) -> Result<(), String> {
        if self.issuer_der() != issuer.subject_der() {
            return Err(format!("{} is not its issuer", issuer.subject()));
        }
        let key = issuer.public_key()?;
        check_signed(&self.der, self.x509.tbs_certificate().signature(), &key)
            .map_err(|e| format!("its signature by {} does not verify: {e}", issuer.subject()))
    }
}

impl Crl {
    pub(crate) fn from_der(der: &[u8]) -> der::Result<Self> {
        let x509 = CertificateList::from_der(der)?;
        split_signed(der)?;
        Ok(Self {
            x509,
            der: der.to_vec(),
        })
    }

    /// Whether this CRL speaks for `issuer` (its name, its signature, cRLSign, no critical
    /// extension we do not understand).
    fn usable_for(&self, issuer: &Cert) -> bool {
        let tbs = &self.x509.tbs_cert_list;
        if tbs.issuer.to_der().ok() != Some(issuer.subject_der()) {
            return false;
        }
        if let Ok(Some(ku)) = issuer.extension::<KeyUsage>(ID_CE_KEY_USAGE) {
            if !ku.crl_sign() {
                return false;
            }
        }
        let known = [ID_CE_CRL_NUMBER, ID_CE_AUTHORITY_KEY_IDENTIFIER];
        let crl_extensions = tbs.crl_extensions.iter().flatten();
        if crl_extensions
            .clone()
            .any(|e| e.critical && !known.contains(&e.extn_id))
        {
            return false;
        }
        let entry_known = [ID_CE_CRL_REASONS, ID_CE_INVALIDITY_DATE];
        let entry_extensions = tbs
            .revoked_certificates
            .iter()
            .flatten()
            .flat_map(|r| r.crl_entry_extensions.iter().flatten());
        if entry_extensions
            .into_iter()
            .any(|e| e.critical && !entry_known.contains(&e.extn_id))
        {
            return false;
        }
        issuer
            .public_key()
            .and_then(|key| check_signed(&self.der, &tbs.signature, &key))
            .is_ok()
    }
}

/// Validates the path from `signer` to one of the policy's anchors with the certificates
/// `pool` (from the signature) and the CRLs `package_crls` and the policy's; returns the
/// index of the anchor.
pub(crate) fn validate(
    signer: &Cert,
    pool: &[Cert],
    package_crls: &[Crl],
    policy: &TrustPolicy,
) -> Result<usize, Refusal> {
    let anchors: Vec<Option<Cert>> = policy
        .anchors
        .iter()
        .map(|a| Cert::from_der(&a.certificate_der).ok())
        .collect();
    let (path, anchor) = build_path(signer, pool, &anchors)?;
    check_path(&path)?;
    for cert in &path {
        let (from, until) = (cert.not_before(), cert.not_after());
        if policy.now < from || policy.now > until {
            return Err(Refusal::SignerExpired(format!(
                "{} is valid from {} until {}",
                cert.subject(),
                crate::rfc3339(from),
                crate::rfc3339(until)
            )));
        }
    }
    let policy_crls: Vec<Crl> = policy
        .crls
        .iter()
        .filter_map(|d| Crl::from_der(d).ok())
        .collect();
    for pair in path.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        let serial = cert.x509.tbs_certificate().serial_number();
        for crl in package_crls.iter().chain(&policy_crls) {
            let listed = crl
                .x509
                .tbs_cert_list
                .revoked_certificates
                .iter()
                .flatten()
                .find(|r| r.serial_number == *serial);
            if let Some(entry) = listed {
                if crl.usable_for(issuer) {
                    return Err(Refusal::SignerRevoked(format!(
                        "{} (serial {}) was revoked at {} by a CRL of {}",
                        cert.subject(),
                        serial,
                        crate::rfc3339(to_offset(entry.revocation_date)),
                        issuer.subject()
                    )));
                }
            }
        }
    }
    Ok(anchor)
}

/// Builds the path signer → … → anchor (depth first over the pool, at most [`MAX_PATH`]).
fn build_path(
    signer: &Cert,
    pool: &[Cert],
    anchors: &[Option<Cert>],
) -> Result<(Vec<Cert>, usize), Refusal> {
    let mut path = vec![signer.clone()];
    let mut why = Vec::new();
    loop {
        let current = path.last().cloned().unwrap_or_else(|| signer.clone());
        let is_anchor = anchors
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.der == current.der));
        if let Some(i) = is_anchor {
            return Ok((path, i));
        }
        let mut issued = |c: &Cert| match current.issued_by(c) {
            Ok(()) => true,
            Err(e) => {
                if current.issuer_der() == c.subject_der() {
                    why.push(e);
                }
                false
            }
        };
        let by_anchor = anchors
            .iter()
            .enumerate()
            .find_map(|(i, a)| a.as_ref().filter(|a| issued(a)).map(|a| (i, a.clone())));
        if let Some((i, a)) = by_anchor {
            path.push(a);
            return Ok((path, i));
        }
        if path.len() + 1 >= MAX_PATH {
            return Err(Refusal::UnknownSigner(format!(
                "no trust anchor within {MAX_PATH} certificates of {}",
                signer.subject()
            )));
        }
        let next = pool
            .iter()
            .find(|c| !path.iter().any(|p| p.der == c.der) && issued(c));
        match next {
            Some(c) => path.push(c.clone()),
            None => {
                let mut m = format!(
                    "{} (issued by {}) does not chain to a trust anchor",
                    current.subject(),
                    current.x509.tbs_certificate().issuer()
                );
                if !why.is_empty() {
                    m.push_str(": ");
                    m.push_str(&why.join("; "));
                }
                return Err(Refusal::UnknownSigner(m));
            }
        }
    }
}

/// The profile checks of the path (see the module documentation); the last certificate is
/// the anchor.
fn check_path(path: &[Cert]) -> Result<(), Refusal> {
    let untrusted = |m: String| Err(Refusal::UnknownSigner(m));
    let signer = &path[0];
    if let Some(ku) = signer
        .extension::<KeyUsage>(ID_CE_KEY_USAGE)
        .map_err(Refusal::UnknownSigner)?
    {
        if !(ku.digital_signature() || ku.non_repudiation()) {
            return untrusted(format!(
                "{}: its keyUsage allows no digital signature",
                signer.subject()
            ));
        }
    }
    for (k, issuer) in path.iter().enumerate().skip(1) {
        let bc = issuer
            .extension::<BasicConstraints>(ID_CE_BASIC_CONSTRAINTS)
            .map_err(Refusal::UnknownSigner)?;
        let Some(bc) = bc.filter(|bc| bc.ca) else {
            return untrusted(format!(
                "{} issues certificates but is not a CA",
                issuer.subject()
            ));
        };
        let below = (k - 1) as u32;
        if bc.path_len_constraint.is_some_and(|n| below > u32::from(n)) {
            return untrusted(format!(
                "{} allows {} intermediate CAs below it, the path has {below}",
                issuer.subject(),
                bc.path_len_constraint.unwrap_or_default()
            ));
        }
        if let Some(ku) = issuer
            .extension::<KeyUsage>(ID_CE_KEY_USAGE)
            .map_err(Refusal::UnknownSigner)?
        {
            if !ku.key_cert_sign() {
                return untrusted(format!(
                    "{}: its keyUsage lacks keyCertSign",
                    issuer.subject()
                ));
            }
        }
    }
    let understood = [
        ID_CE_BASIC_CONSTRAINTS,
        ID_CE_KEY_USAGE,
        ID_CE_EXT_KEY_USAGE,
        ID_CE_SUBJECT_ALT_NAME,
        ID_CE_SUBJECT_KEY_IDENTIFIER,
        ID_CE_AUTHORITY_KEY_IDENTIFIER,
    ];
    for cert in &path[..path.len() - 1] {
        if let Some(e) = cert
            .extensions()
            .iter()
            .find(|e| e.critical && !understood.contains(&e.extn_id))
        {
            return untrusted(format!(
                "{}: critical extension {} is not understood",
                cert.subject(),
                e.extn_id
            ));
        }
    }
    Ok(())
}
