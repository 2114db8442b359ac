//! `manifest.p7s`: a detached CMS SignedData (RFC 5652 §5) over the exact bytes of
//! `manifest.toml`, made and checked with the RustCrypto `cms` types.
//!
//! Profile (what `openssl cms -sign -binary -md sha256 -outform DER` makes too):
//! * `ContentInfo { id-signedData, SignedData }`, DER;
//! * `SignedData` version 1, `digestAlgorithms { sha256 }`, `encapContentInfo { id-data }`
//!   without `eContent` (detached, §5.2), `certificates`: the signer's certificate and any
//!   intermediates, `crls`: optional CRLs for offline revocation checks;
//! * one `SignerInfo`, version 1, `sid`: `issuerAndSerialNumber` of the signer's certificate
//!   (a `subjectKeyIdentifier` sid, version 3, is accepted too), `digestAlgorithm` sha256,
//!   `signedAttrs` (§5.3, §11): content-type `id-data`, message-digest SHA-256 of the
//!   manifest, signing-time; `signatureAlgorithm` ecdsa-with-SHA256 or RSASSA-PSS (see
//!   [`crate::algorithm`]); the signature is over the DER of the signed attributes with the
//!   `SET OF` tag (§5.4).
//!
//! Written by hand: the walk over the DER that finds the certificates, CRLs and signed
//! attributes as the bytes they were signed as. The `cms` types decode them, but
//! re-encoding a decoded certificate is not always the same bytes (x509-cert rewrites a
//! GeneralizedTime before 2050 as UTCTime), and a signature is over the bytes.

use cms::{
    cert::IssuerAndSerialNumber,
    content_info::{CmsVersion, ContentInfo},
    revocation::{RevocationInfoChoice, RevocationInfoChoices},
    signed_data::{
        CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo,
        SignerInfos,
    },
};
use const_oid::db::rfc5911::{
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
};
use der::{
    asn1::{ObjectIdentifier, OctetString, SetOfVec},
    Any, AnyRef, Decode, Encode, Reader, SliceReader, Tag, TagNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::{
    attr::Attribute, crl::CertificateList, ext::pkix::SubjectKeyIdentifier, Certificate,
};

use crate::{
    algorithm::{self, Algorithm},
    chain::{self, Cert, Crl},
    PackageSigner, Refusal, SignatureAlgorithm,
};

/// What a verified signature says: who signed (with the other certificates and CRLs
/// the signature carries), and when they said they did.
#[derive(Debug)]
pub(crate) struct Signed {
    pub signer: Cert,
    pub certificates: Vec<Cert>,
    pub crls: Vec<Crl>,
    pub signing_time: Option<OffsetDateTime>,
}

/// Signs `manifest`: the DER `ContentInfo` of `manifest.p7s`. `chain` is the signer's
/// certificate then any intermediates (DER). The signature is checked against the signer's
/// certificate before it is returned, so a key that does not match is an error here.
pub(crate) fn sign(
    manifest: &[u8],
    chain: &[Vec<u8>],
    crls: &[Vec<u8>],
    signing_time: OffsetDateTime,
    signer: &dyn PackageSigner,
) -> Result<Vec<u8>, Refusal> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Refusal::Malformed(format!("{what}: {e}"));
    let leaf_der = chain
        .first()
        .ok_or_else(|| Refusal::Malformed("no signer certificate".into()))?;
    let leaf = Cert::from_der(leaf_der).map_err(|e| bad("the signer certificate", &e))?;
    let mut certificates = Vec::with_capacity(chain.len());
    for der in chain {
        let c = Certificate::from_der(der).map_err(|e| bad("a chain certificate", &e))?;
        certificates.push(cms::cert::CertificateChoices::Certificate(c));
    }
    let mut revocation = Vec::with_capacity(crls.len());
    for der in crls {
        let crl = CertificateList::from_der(der).map_err(|e| bad("a CRL", &e))?;
        revocation.push(RevocationInfoChoice::Crl(crl));
    }

    let algorithm = match signer.algorithm() {
        SignatureAlgorithm::EcdsaP256Sha256 => Algorithm::EcdsaSha256,
        SignatureAlgorithm::RsaPssSha256 => Algorithm::RsaPssSha256 {
            salt_len: algorithm::PSS_SALT_LEN as usize,
        },
    };
    let signed_attrs =
        signed_attributes(manifest, signing_time).map_err(|e| bad("signed attributes", &e))?;
    let to_sign = signed_attrs
        .to_der()
        .map_err(|e| bad("signed attributes", &e))?;
    let signature = signer
        .sign(&to_sign)
        .map_err(|e| Refusal::BadSignature(format!("the signer failed: {e}")))?;
    let key = leaf.public_key().map_err(Refusal::UnknownSigner)?;
    algorithm.verify(&key, &to_sign, &signature).map_err(|e| {
        Refusal::BadSignature(format!(
            "the signing key does not match the signer certificate ({e})"
        ))
    })?;

    let tbs = leaf.x509.tbs_certificate();
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: algorithm::sha256_digest_algorithm(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: algorithm.identifier(),
        signature: OctetString::new(signature).map_err(|e| bad("signature", &e))?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![algorithm::sha256_digest_algorithm()])
            .map_err(|e| bad("digest algorithms", &e))?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(
            CertificateSet::try_from(certificates).map_err(|e| bad("certificates", &e))?,
        ),
        crls: (!revocation.is_empty())
            .then(|| RevocationInfoChoices::try_from(revocation))
            .transpose()
            .map_err(|e| bad("CRLs", &e))?,
        signer_infos: SignerInfos::try_from(vec![signer_info])
            .map_err(|e| bad("signer info", &e))?,
    };
    let content_info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(|e| bad("SignedData", &e))?,
    };
    content_info.to_der().map_err(|e| bad("ContentInfo", &e))
}

/// content-type, signing-time, message-digest (RFC 5652 §11.1–11.3).
fn signed_attributes(manifest: &[u8], at: OffsetDateTime) -> der::Result<SetOfVec<Attribute>> {
    let one = |oid: ObjectIdentifier, value: Any| -> der::Result<Attribute> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value])?,
        })
    };
    let seconds =
        u64::try_from(at.unix_timestamp()).map_err(|_| der::Tag::UtcTime.value_error())?;
    // UTCTime for 1950–2049, GeneralizedTime otherwise (§11.3).
    let time = x509_cert::time::Time::from(der::DateTime::from_unix_duration(
        std::time::Duration::from_secs(seconds),
    )?);
    let digest = OctetString::new(Sha256::digest(manifest).to_vec())?;
    SetOfVec::try_from(vec![
        one(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)?)?,
        one(ID_SIGNING_TIME, Any::encode_from(&time)?)?,
        one(ID_MESSAGE_DIGEST, Any::encode_from(&digest)?)?,
    ])
}

/// Checks `p7s` as a detached signature over `manifest`: structure, message digest and the
/// signature under the signer certificate's key. Not yet whether the signer is trusted.
pub(crate) fn verify(p7s: &[u8], manifest: &[u8]) -> Result<Signed, Refusal> {
    let malformed = |e: &dyn std::fmt::Display| Refusal::Malformed(format!("manifest.p7s: {e}"));
    let bad = |m: String| Err(Refusal::BadSignature(m));
    let content_info = ContentInfo::from_der(p7s).map_err(|e| malformed(&e))?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(malformed(&format!(
            "content type {} is not signed data",
            content_info.content_type
        )));
    }
    let sd: SignedData = content_info
        .content
        .decode_as()
        .map_err(|e| malformed(&e))?;
    let raw = RawParts::walk(p7s).map_err(|e| malformed(&e))?;

    if sd.encap_content_info.econtent_type != ID_DATA {
        return Err(malformed(&"the signed content type is not id-data"));
    }
    if sd.encap_content_info.econtent.is_some() {
        return Err(malformed(
            &"the manifest is encapsulated; a package signature is detached",
        ));
    }
    let [si] = sd.signer_infos.0.as_slice() else {
        return Err(malformed(&format!(
            "{} signer infos; a package has one",
            sd.signer_infos.0.len()
        )));
    };
    if !algorithm::is_sha256(&si.digest_alg) {
        return bad(format!(
            "digest algorithm {} is not SHA-256",
            si.digest_alg.oid
        ));
    }
    let algorithm =
        Algorithm::from_identifier(&si.signature_algorithm).map_err(Refusal::BadSignature)?;
    if algorithm == Algorithm::RsaPkcs1Sha256 {
        return bad(
            "RSASSA-PKCS1-v1_5 package signatures are not accepted; sign with RSASSA-PSS".into(),
        );
    }
    let (Some(attrs), Some(attrs_der)) = (&si.signed_attrs, raw.signed_attrs) else {
        return bad("no signed attributes (the profile signs content-type, message-digest and signing-time)".into());
    };
    let content_type = single_attribute(attrs, ID_CONTENT_TYPE)?;
    if content_type.decode_as::<ObjectIdentifier>().ok() != Some(ID_DATA) {
        return bad("the content-type attribute is not id-data".into());
    }
    let digest = single_attribute(attrs, ID_MESSAGE_DIGEST)?;
    let digest = digest
        .decode_as::<OctetString>()
        .map_err(|e| Refusal::BadSignature(format!("message-digest attribute: {e}")))?;
    if digest.as_bytes() != Sha256::digest(manifest).as_slice() {
        return bad("the message digest differs from the SHA-256 of manifest.toml".into());
    }
    let signing_time = match attrs.iter().find(|a| a.oid == ID_SIGNING_TIME) {
        None => None,
        Some(_) => {
            let t = single_attribute(attrs, ID_SIGNING_TIME)?
                .decode_as::<x509_cert::time::Time>()
                .map_err(|e| Refusal::BadSignature(format!("signing-time attribute: {e}")))?;
            Some(chain::to_offset(t))
        }
    };

    let mut certificates = Vec::with_capacity(raw.certificates.len());
    // Other certificate and revocation formats (RFC 5652 §10.2.2, §10.2.1) are skipped.
    for der in raw.certificates.iter().filter(|d| d.first() == Some(&0x30)) {
        certificates
            .push(Cert::from_der(der).map_err(|e| malformed(&format!("a certificate: {e}")))?);
    }
    let mut crls = Vec::with_capacity(raw.crls.len());
    for der in raw.crls.iter().filter(|d| d.first() == Some(&0x30)) {
        crls.push(Crl::from_der(der).map_err(|e| malformed(&format!("a CRL: {e}")))?);
    }
    let signer = certificates
        .iter()
        .find(|c| identifies(&si.sid, c))
        .cloned()
        .ok_or_else(|| {
            Refusal::UnknownSigner("the signer's certificate is not in manifest.p7s".into())
        })?;
    let key = signer.public_key().map_err(Refusal::UnknownSigner)?;
    // §5.4: the signature is over the DER of the attributes with the SET OF tag.
    let mut message = attrs_der.to_vec();
    message[0] = 0x31;
    algorithm
        .verify(&key, &message, si.signature.as_bytes())
        .map_err(|e| Refusal::BadSignature(format!("{e} (signer {})", signer.subject())))?;
    Ok(Signed {
        signer,
        certificates,
        crls,
        signing_time,
    })
}

/// The one value of the one attribute `oid` (RFC 5652 §5.3: each attribute type once, and
/// content-type, message-digest and signing-time have one value).
fn single_attribute(attrs: &SetOfVec<Attribute>, oid: ObjectIdentifier) -> Result<&Any, Refusal> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    match (found.next(), found.next()) {
        (Some(a), None) if a.values.len() == 1 => Ok(&a.values.as_slice()[0]),
        (None, _) => Err(Refusal::BadSignature(format!("no signed attribute {oid}"))),
        _ => Err(Refusal::BadSignature(format!(
            "signed attribute {oid} is not single-valued"
        ))),
    }
}

/// Whether `sid` names `cert` (by issuer and serial, or by subject key identifier).
fn identifies(sid: &SignerIdentifier, cert: &Cert) -> bool {
    let tbs = cert.x509.tbs_certificate();
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => {
            isn.serial_number == *tbs.serial_number()
                && isn.issuer.to_der().ok() == tbs.issuer().to_der().ok()
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => tbs
            .get_extension::<SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, own)| own == *ski),
    }
}

/// The certificates, CRLs and signed attributes of a `ContentInfo { SignedData }` as their
/// bytes in the DER (see the module documentation).
#[derive(Debug, Default)]
struct RawParts<'a> {
    certificates: Vec<&'a [u8]>,
    crls: Vec<&'a [u8]>,
    /// The `[0] IMPLICIT` signed attributes of the first SignerInfo, tag included.
    signed_attrs: Option<&'a [u8]>,
}

impl<'a> RawParts<'a> {
    fn walk(der: &'a [u8]) -> der::Result<Self> {
        let inside = |any: AnyRef<'a>| SliceReader::new(any.value());
        let content_info = AnyRef::from_der(der)?;
        let mut r = inside(content_info)?;
        r.decode::<ObjectIdentifier>()?;
        let explicit = r.decode::<AnyRef<'a>>()?;
        let mut r = inside(explicit)?;
        let signed_data = r.decode::<AnyRef<'a>>()?;
        let mut r = inside(signed_data)?;
        r.decode::<AnyRef<'a>>()?; // version
        r.decode::<AnyRef<'a>>()?; // digestAlgorithms
        r.decode::<AnyRef<'a>>()?; // encapContentInfo
        let mut parts = Self::default();
        if Tag::peek(&r)? == context(0) {
            parts.certificates = elements(r.decode::<AnyRef<'a>>()?)?;
        }
        if Tag::peek(&r)? == context(1) {
            parts.crls = elements(r.decode::<AnyRef<'a>>()?)?;
        }
        let signer_infos = r.decode::<AnyRef<'a>>()?;
        let mut infos = inside(signer_infos)?;
        if !infos.is_finished() {
            let mut si = inside(infos.decode::<AnyRef<'a>>()?)?;
            si.decode::<AnyRef<'a>>()?; // version
            si.decode::<AnyRef<'a>>()?; // sid
            si.decode::<AnyRef<'a>>()?; // digestAlgorithm
            if Tag::peek(&si)? == context(0) {
                parts.signed_attrs = Some(si.tlv_bytes()?);
            }
        }
        Ok(parts)
    }
}

/// `[n]` constructed, context-specific.
fn context(n: u8) -> Tag {
    Tag::ContextSpecific {
        constructed: true,
        number: TagNumber(n.into()),
    }
}

/// The full TLVs inside a constructed value.
fn elements(any: AnyRef<'_>) -> der::Result<Vec<&[u8]>> {
    let mut r = SliceReader::new(any.value())?;
    let mut out = Vec::new();
    while !r.is_finished() {
        out.push(r.tlv_bytes()?);
    }
    Ok(out)
}
